//! Khaacho's vendor rules as pure functions (DOMAIN.md "Routing to vendors", "Price
//! intelligence").
//!
//! No I/O, no clock, no database, like `khaacho-credit`: the routing step reads the facts
//! (the order's lines, the vendors with their offers, stock, workload and scores, the market
//! prices), calls [`route`], and stores the [`Decision`] it returns — every candidate with its
//! eligibility and score components, the chosen plan and a reason text a person can read.
//!
//! | module | what it decides |
//! | --- | --- |
//! | [`eligibility`] | which vendor may supply which line, with the relaxations |
//! | [`score`] | a vendor's score 0–100 for the lines it would supply, with components |
//! | [`plan`] | one vendor for the whole order when one can, else the least-cost split |
//! | [`vendor_score`] | the hourly vendor score 0–100 with its factors, grade, attention flag |
//! | [`price`] | price intelligence: statistics, 30-day change, volatility, trend, alerts, competitiveness |
//!
//! Conventions: money is integer paisa; quantities are base milli-units (as in the order
//! lines); every threshold comes from [`RoutingSettings`], whose defaults are DOMAIN's.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod eligibility;
pub mod plan;
pub mod price;
pub mod score;
pub mod settings;
pub mod vendor_score;

pub use eligibility::{Ineligible, LineEligibility, eligibility};
pub use plan::{Decision, Part, Plan, next_vendor, route};
pub use price::{
    ChangeSeverity, Competitiveness, PriceChange, PriceInsight, Trend, change_alert,
    competitiveness, insight, mean_paisa,
};
pub use score::{Component, ComponentName, VendorScore, score_vendor};
pub use settings::{RoutingSettings, ScoreWeights};
pub use vendor_score::{
    Grade, VendorActivity, VendorFactor, VendorFactorScore, VendorRating, rate_vendor,
};

use uuid::Uuid;

/// Money in paisa (1 NPR = 100 paisa), as everywhere in Khaacho.
pub use khaacho_credit::Paisa;

/// A point on the map, degrees.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GeoPoint {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
}

impl GeoPoint {
    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn km_to(self, other: GeoPoint) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dla = la2 - la1;
        let dlo = (other.lng - self.lng).to_radians();
        let a = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * 6_371.0 * a.sqrt().clamp(0.0, 1.0).asin()
    }
}

/// Where the order goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Retailer {
    /// District name (compared case-insensitively).
    pub district: String,
    /// Shop location, when known.
    pub location: Option<GeoPoint>,
}

/// One line of the order to route.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Line number in the order.
    pub line_no: u32,
    /// Product.
    pub product_id: Uuid,
    /// Quantity in base milli-units.
    pub qty_milli: i64,
    /// Average price per base unit across vendors' current offers (price intelligence);
    /// `None` when unknown.
    pub market_price_paisa: Option<Paisa>,
    /// Everything sold of this product on the platform in the last 30 days, base milli-units.
    pub volume_30d_milli: i64,
}

/// What a vendor offers for one product.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    /// Product.
    pub product_id: Uuid,
    /// Price per base unit for the line's quantity (tiers already applied).
    pub price_paisa: Paisa,
    /// Stock in base milli-units.
    pub stock_milli: i64,
    /// What this vendor sold of the product in the last 30 days, base milli-units.
    pub volume_30d_milli: i64,
}

/// A vendor as routing sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Vendor {
    /// Id.
    pub id: Uuid,
    /// Taking orders at all.
    pub active: bool,
    /// Districts it delivers to (case-insensitive).
    pub districts: Vec<String>,
    /// Warehouse location, when known.
    pub location: Option<GeoPoint>,
    /// Inside its working hours now (the caller knows the clock and the time zone).
    pub open_now: bool,
    /// Orders it is working on (offered or accepted, not yet delivered).
    pub active_orders: u32,
    /// Most orders it works on at once; 0 = no limit.
    pub capacity: u32,
    /// Of those, the offers it has not answered yet.
    pub awaiting_orders: u32,
    /// Most offers it may leave unanswered at once; 0 = no limit.
    pub awaiting_capacity: u32,
    /// Its vendor score 0–100; `None` for a new vendor.
    pub reliability: Option<u8>,
    /// Its valid offers.
    pub offers: Vec<Offer>,
}

impl Vendor {
    /// Its offer for `product`, if any.
    pub fn offer(&self, product: Uuid) -> Option<&Offer> {
        self.offers.iter().find(|o| o.product_id == product)
    }
}

pub(crate) use khaacho_credit::{npr, ramp};

#[cfg(test)]
mod tests {
    use super::*;

    fn names_match<T: serde::Serialize + Copy>(all: &[T], name: impl Fn(T) -> &'static str) {
        for &v in all {
            assert_eq!(serde_json::to_value(v).unwrap(), name(v));
        }
    }

    #[test]
    fn each_name_is_the_serialized_form() {
        use eligibility::Ineligible as I;
        names_match(
            &[
                I::Inactive,
                I::OutOfArea,
                I::AtCapacity,
                I::UnansweredOffers,
                I::NoOffer,
                I::ShortStock,
                I::Closed,
                I::VolumeShare,
            ],
            I::as_str,
        );
        use ComponentName as C;
        names_match(
            &[
                C::Availability,
                C::Proximity,
                C::Workload,
                C::Price,
                C::Reliability,
            ],
            C::as_str,
        );
        use VendorFactor as F;
        names_match(
            &[
                F::ResponseSpeed,
                F::AcceptanceRate,
                F::Price,
                F::DeliverySuccess,
                F::CancellationRate,
            ],
            F::as_str,
        );
        use Grade as G;
        names_match(&[G::APlus, G::A, G::B, G::C, G::D, G::F], G::as_str);
        names_match(
            &[Trend::Stable, Trend::Rising, Trend::Falling],
            Trend::as_str,
        );
        use ChangeSeverity as S;
        names_match(&[S::Medium, S::High, S::Critical], S::as_str);
        use Competitiveness as K;
        names_match(&[K::Excellent, K::Good, K::Fair, K::Expensive], K::as_str);
    }

    #[test]
    fn distances_are_great_circle_kilometres() {
        let kathmandu = GeoPoint {
            lat: 27.7172,
            lng: 85.3240,
        };
        let pokhara = GeoPoint {
            lat: 28.2096,
            lng: 83.9856,
        };
        let d = kathmandu.km_to(pokhara);
        assert!((d - 142.0).abs() < 3.0, "{d}");
        assert_eq!(kathmandu.km_to(kathmandu), 0.0);
    }
}
