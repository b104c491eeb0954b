//! A vendor's score 0–100 for the lines it would supply (DOMAIN.md "Routing to vendors",
//! "Score"): availability 30, proximity 20, workload 15, price 20, reliability 15, averaged by
//! weight. Every component is kept, so the decision shows why one vendor beat another.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Line, Retailer, RoutingSettings, Vendor, ramp};

/// Name of a score component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentName {
    /// Stock against quantity: 50 at exactly the quantity, 100 from twice it (average of
    /// the lines).
    Availability,
    /// 100 at the retailer's door, 0 at the distance limit; without both locations, 100 in
    /// the retailer's district and 0 elsewhere.
    Proximity,
    /// Free capacity: 100 idle, 0 full (100 without a capacity limit).
    Workload,
    /// Price against the market average, by value over the lines: ≤ 90% → 100, ≥ 110% → 50,
    /// linear between; 75 when no market price is known.
    Price,
    /// The vendor score; new vendors start at 50.
    Reliability,
}

impl ComponentName {
    /// Its stable snake_case name (the serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentName::Availability => "availability",
            ComponentName::Proximity => "proximity",
            ComponentName::Workload => "workload",
            ComponentName::Price => "price",
            ComponentName::Reliability => "reliability",
        }
    }
}

/// One weighted component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Which one.
    pub name: ComponentName,
    /// Its weight.
    pub weight: u32,
    /// 0–100.
    pub points: u8,
}

/// A vendor's score for some lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorScore {
    /// The vendor.
    pub vendor_id: Uuid,
    /// `round(Σ weight·points / Σ weight)`, 0–100.
    pub total: u8,
    /// Every component.
    pub components: Vec<Component>,
}

/// Scores `vendor` for `lines` (the lines it would supply; it must offer each product).
pub fn score_vendor(
    retailer: &Retailer,
    vendor: &Vendor,
    lines: &[&Line],
    settings: &RoutingSettings,
) -> VendorScore {
    let w = &settings.weights;
    let availability = {
        let points: Vec<f64> = lines
            .iter()
            .map(|l| {
                let stock = vendor.offer(l.product_id).map_or(0, |o| o.stock_milli);
                let ratio = stock as f64 / l.qty_milli.max(1) as f64;
                if ratio < 1.0 {
                    0.0
                } else {
                    50.0 + f64::from(ramp(ratio, 1.0, 2.0)) / 2.0
                }
            })
            .collect();
        if points.is_empty() {
            0
        } else {
            (points.iter().sum::<f64>() / points.len() as f64).round() as u8
        }
    };
    let proximity = match (vendor.location, retailer.location) {
        (Some(a), Some(b)) => ramp(a.km_to(b), settings.max_distance_km, 0.0),
        _ if vendor
            .districts
            .iter()
            .any(|d| d.trim().eq_ignore_ascii_case(retailer.district.trim())) =>
        {
            100
        }
        _ => 0,
    };
    let workload = if vendor.capacity == 0 {
        100
    } else {
        ramp(
            f64::from(vendor.active_orders) / f64::from(vendor.capacity),
            1.0,
            0.0,
        )
    };
    let price = {
        let (mut theirs, mut market) = (0i128, 0i128);
        for l in lines {
            if let (Some(o), Some(m)) = (vendor.offer(l.product_id), l.market_price_paisa) {
                theirs += i128::from(o.price_paisa) * i128::from(l.qty_milli);
                market += i128::from(m) * i128::from(l.qty_milli);
            }
        }
        if market <= 0 {
            75
        } else {
            let ratio = theirs as f64 / market as f64;
            50 + ramp(ratio, 1.10, 0.90) / 2
        }
    };
    let reliability = vendor
        .reliability
        .unwrap_or(settings.new_vendor_reliability)
        .min(100);
    let components = vec![
        component(ComponentName::Availability, w.availability, availability),
        component(ComponentName::Proximity, w.proximity, proximity),
        component(ComponentName::Workload, w.workload, workload),
        component(ComponentName::Price, w.price, price),
        component(ComponentName::Reliability, w.reliability, reliability),
    ];
    let weights: u64 = components.iter().map(|c| u64::from(c.weight)).sum();
    let weighted: u64 = components
        .iter()
        .map(|c| u64::from(c.weight) * u64::from(c.points))
        .sum();
    let total = if weights == 0 {
        0
    } else {
        ((weighted as f64) / (weights as f64)).round() as u8
    };
    VendorScore {
        vendor_id: vendor.id,
        total,
        components,
    }
}

fn component(name: ComponentName, weight: u32, points: u8) -> Component {
    Component {
        name,
        weight,
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GeoPoint, Offer};

    fn setup(stock: i64, price: i64) -> (Retailer, Vendor, Line) {
        let product = Uuid::from_u128(7);
        let retailer = Retailer {
            district: "Kathmandu".into(),
            location: None,
        };
        let vendor = Vendor {
            id: Uuid::from_u128(1),
            active: true,
            districts: vec!["Kathmandu".into()],
            location: None,
            open_now: true,
            active_orders: 5,
            capacity: 10,
            awaiting_orders: 0,
            awaiting_capacity: 5,
            reliability: None,
            offers: vec![Offer {
                product_id: product,
                price_paisa: price,
                stock_milli: stock,
                volume_30d_milli: 0,
            }],
        };
        let line = Line {
            line_no: 1,
            product_id: product,
            qty_milli: 10_000,
            market_price_paisa: Some(1_000),
            volume_30d_milli: 0,
        };
        (retailer, vendor, line)
    }

    fn points(s: &VendorScore, name: ComponentName) -> u8 {
        s.components
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.points)
            .unwrap()
    }

    #[test]
    fn components_at_their_boundaries() {
        let st = RoutingSettings::default();
        let cases = [
            // (stock, price, availability, price points)
            (10_000, 900, 50, 100),
            (15_000, 1_000, 75, 75),
            (20_000, 1_100, 100, 50),
            (40_000, 1_500, 100, 50),
            (20_000, 500, 100, 100),
        ];
        for (stock, price, avail, price_points) in cases {
            let (r, v, l) = setup(stock, price);
            let s = score_vendor(&r, &v, &[&l], &st);
            assert_eq!(
                points(&s, ComponentName::Availability),
                avail,
                "stock {stock}"
            );
            assert_eq!(
                points(&s, ComponentName::Price),
                price_points,
                "price {price}"
            );
            assert_eq!(points(&s, ComponentName::Proximity), 100);
            assert_eq!(points(&s, ComponentName::Workload), 50);
            assert_eq!(points(&s, ComponentName::Reliability), 50, "a new vendor");
        }
    }

    #[test]
    fn total_is_the_weighted_average() {
        let st = RoutingSettings::default();
        let (r, mut v, mut l) = setup(20_000, 900);
        v.reliability = Some(90);
        v.active_orders = 0;
        // availability 100·30 + proximity 100·20 + workload 100·15 + price 100·20 + 90·15
        let s = score_vendor(&r, &v, &[&l], &st);
        assert_eq!(s.total, 99); // 9850 / 100 = 98.5 → 99
        l.market_price_paisa = None;
        let s = score_vendor(&r, &v, &[&l], &st);
        assert_eq!(points(&s, ComponentName::Price), 75);
    }

    #[test]
    fn proximity_follows_the_distance_when_both_places_are_known() {
        let st = RoutingSettings::default();
        let (mut r, mut v, l) = setup(20_000, 1_000);
        r.location = Some(GeoPoint {
            lat: 27.7172,
            lng: 85.3240,
        });
        v.location = r.location;
        assert_eq!(
            points(&score_vendor(&r, &v, &[&l], &st), ComponentName::Proximity),
            100
        );
        v.location = Some(GeoPoint {
            lat: 28.2096,
            lng: 83.9856,
        });
        assert_eq!(
            points(&score_vendor(&r, &v, &[&l], &st), ComponentName::Proximity),
            0
        );
        v.location = None;
        v.districts = vec!["Lalitpur".into()];
        assert_eq!(
            points(&score_vendor(&r, &v, &[&l], &st), ComponentName::Proximity),
            0
        );
    }
}
