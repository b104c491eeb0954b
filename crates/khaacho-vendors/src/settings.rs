//! Routing thresholds; the defaults are DOMAIN.md's "Routing to vendors".

use serde::{Deserialize, Serialize};

use crate::Paisa;

/// Weights of the score components (DOMAIN: availability 30, proximity 20, workload 15,
/// price 20, reliability 15).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreWeights {
    /// Stock against the quantity.
    pub availability: u32,
    /// Same district, or distance.
    pub proximity: u32,
    /// Free capacity.
    pub workload: u32,
    /// Price against the market average.
    pub price: u32,
    /// The vendor score.
    pub reliability: u32,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            availability: 30,
            proximity: 20,
            workload: 15,
            price: 20,
            reliability: 15,
        }
    }
}

/// Everything routing decides by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutingSettings {
    /// A vendor outside the retailer's district is eligible within this distance (km).
    pub max_distance_km: f64,
    /// A vendor that already sold more than this percentage of the product's 30-day volume is
    /// not given the line (relaxed when it would leave nobody).
    pub max_volume_share_pct: u32,
    /// Added to a split's cost for each vendor beyond the first (DOMAIN: NPR 200).
    pub extra_vendor_penalty_paisa: Paisa,
    /// Reliability points of a vendor without a score yet.
    pub new_vendor_reliability: u8,
    /// Score weights.
    pub weights: ScoreWeights,
    /// Most vendors a split may use (bounds the search; orders rarely need more than 3).
    pub max_split_vendors: usize,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            max_distance_km: 25.0,
            max_volume_share_pct: 40,
            extra_vendor_penalty_paisa: 20_000,
            new_vendor_reliability: 50,
            weights: ScoreWeights::default(),
            max_split_vendors: 4,
        }
    }
}
