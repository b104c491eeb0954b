//! Which vendor may supply which line (DOMAIN.md "Routing to vendors", "Eligible").
//!
//! Hard rules, never relaxed: the vendor is active; it serves the retailer's district or is
//! within [`RoutingSettings::max_distance_km`]; it is under capacity; it offers the product and
//! holds stock for the line's quantity. Two rules give way rather than leave an order without
//! a vendor:
//! - **working hours**, per line: a line some open vendor may supply goes only to vendors open
//!   now; a line no open vendor may supply may go to a closed one too (it takes the offer when
//!   it opens), rather than leave the line — and with it the order — with nobody;
//! - **volume share**: a vendor that already sold more than
//!   [`RoutingSettings::max_volume_share_pct`] of the product's 30-day volume is not given the
//!   line — unless that would leave the line with nobody.

use serde::{Deserialize, Serialize};

use crate::{Line, Retailer, RoutingSettings, Vendor};

/// Why a vendor may not supply a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    /// The vendor is not taking orders.
    Inactive,
    /// Neither the retailer's district nor within the distance.
    OutOfArea,
    /// Working on as many orders as it may (`max_active`).
    AtCapacity,
    /// Leaving as many offers unanswered as it may (`max_awaiting`): it takes new ones once
    /// it answers some.
    UnansweredOffers,
    /// No valid offer for the product.
    NoOffer,
    /// Less stock than the quantity.
    ShortStock,
    /// Outside its working hours.
    Closed,
    /// The line would take it above its share of the product's 30-day volume.
    VolumeShare,
}

impl Ineligible {
    /// Its stable snake_case name (the serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            Ineligible::Inactive => "inactive",
            Ineligible::OutOfArea => "out_of_area",
            Ineligible::AtCapacity => "at_capacity",
            Ineligible::UnansweredOffers => "unanswered_offers",
            Ineligible::NoOffer => "no_offer",
            Ineligible::ShortStock => "short_stock",
            Ineligible::Closed => "closed",
            Ineligible::VolumeShare => "volume_share",
        }
    }
}

/// Eligibility of every vendor for every line, with the relaxations that were needed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineEligibility {
    /// `cells[v][l]`: empty when vendor `v` may supply line `l`, else every reason it may not.
    pub cells: Vec<Vec<Vec<Ineligible>>>,
    /// Lines (their `line_no`) no open vendor may supply, for which working hours were not
    /// applied.
    pub hours_relaxed: Vec<u32>,
    /// Lines (their `line_no`) for which the volume share was not applied.
    pub volume_relaxed: Vec<u32>,
}

impl LineEligibility {
    /// Whether vendor `v` may supply line `l` (indexes into the inputs).
    pub fn ok(&self, v: usize, l: usize) -> bool {
        self.cells[v][l].is_empty()
    }
}

/// Decides eligibility for `lines` among `vendors`.
pub fn eligibility(
    retailer: &Retailer,
    lines: &[Line],
    vendors: &[Vendor],
    settings: &RoutingSettings,
) -> LineEligibility {
    // Hard reasons per cell.
    let mut cells: Vec<Vec<Vec<Ineligible>>> = vendors
        .iter()
        .map(|v| {
            let mut vendor_level = Vec::new();
            if !v.active {
                vendor_level.push(Ineligible::Inactive);
            }
            if !serves(v, retailer, settings) {
                vendor_level.push(Ineligible::OutOfArea);
            }
            let full = |n: u32, most: u32| most > 0 && n >= most;
            if full(v.active_orders, v.capacity) {
                vendor_level.push(Ineligible::AtCapacity);
            }
            if full(v.awaiting_orders, v.awaiting_capacity) {
                vendor_level.push(Ineligible::UnansweredOffers);
            }
            lines
                .iter()
                .map(|l| {
                    let mut why = vendor_level.clone();
                    match v.offer(l.product_id) {
                        None => why.push(Ineligible::NoOffer),
                        Some(o) if o.stock_milli < l.qty_milli => why.push(Ineligible::ShortStock),
                        Some(_) => {}
                    }
                    why
                })
                .collect()
        })
        .collect();
    // Working hours, per line, unless no open vendor may supply the line. (Applied to the
    // whole order, a late-hours vendor carrying some of its lines would leave the rest with
    // nobody, and the order waiting for an operator, while closed vendors could take them.)
    let mut hours_relaxed = Vec::new();
    for (l, line) in lines.iter().enumerate() {
        let open_ok = (0..vendors.len()).any(|v| cells[v][l].is_empty() && vendors[v].open_now);
        if open_ok {
            for (v, vendor) in vendors.iter().enumerate() {
                if !vendor.open_now {
                    cells[v][l].push(Ineligible::Closed);
                }
            }
        } else if (0..vendors.len()).any(|v| cells[v][l].is_empty()) {
            hours_relaxed.push(line.line_no);
        }
    }
    // Volume share, per line, unless it would leave the line with nobody.
    let mut volume_relaxed = Vec::new();
    for (l, line) in lines.iter().enumerate() {
        let over: Vec<bool> = vendors
            .iter()
            .map(|v| {
                v.offer(line.product_id)
                    .is_some_and(|o| over_share(o.volume_30d_milli, line, settings))
            })
            .collect();
        let someone_ok = (0..vendors.len()).any(|v| cells[v][l].is_empty() && !over[v]);
        let someone_hard_ok = (0..vendors.len()).any(|v| cells[v][l].is_empty());
        if someone_ok || !someone_hard_ok {
            for (v, over) in over.iter().enumerate() {
                if *over {
                    cells[v][l].push(Ineligible::VolumeShare);
                }
            }
        } else {
            volume_relaxed.push(line.line_no);
        }
    }
    LineEligibility {
        cells,
        hours_relaxed,
        volume_relaxed,
    }
}

/// The retailer's district (case-insensitive), or within the distance when both locations
/// are known.
fn serves(v: &Vendor, r: &Retailer, settings: &RoutingSettings) -> bool {
    let same_district = v
        .districts
        .iter()
        .any(|d| d.trim().eq_ignore_ascii_case(r.district.trim()));
    same_district
        || matches!((v.location, r.location), (Some(a), Some(b)) if a.km_to(b) <= settings.max_distance_km)
}

/// The vendor already sold more than the cap's share of the product's 30-day volume (a
/// product nobody bought yet has no shares to exceed).
fn over_share(vendor_volume: i64, line: &Line, settings: &RoutingSettings) -> bool {
    let all = i128::from(line.volume_30d_milli.max(0));
    all > 0
        && i128::from(vendor_volume.max(0)) * 100 > all * i128::from(settings.max_volume_share_pct)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::{GeoPoint, Offer};

    fn product() -> Uuid {
        Uuid::from_u128(7)
    }

    fn vendor(n: u128) -> Vendor {
        Vendor {
            id: Uuid::from_u128(n),
            active: true,
            districts: vec!["Kathmandu".into()],
            location: None,
            open_now: true,
            active_orders: 0,
            capacity: 10,
            awaiting_orders: 0,
            awaiting_capacity: 5,
            reliability: Some(80),
            offers: vec![Offer {
                product_id: product(),
                price_paisa: 100,
                stock_milli: 10_000,
                volume_30d_milli: 0,
            }],
        }
    }

    fn line(qty: i64, volume: i64) -> Line {
        Line {
            line_no: 1,
            product_id: product(),
            qty_milli: qty,
            market_price_paisa: Some(100),
            volume_30d_milli: volume,
        }
    }

    fn retailer() -> Retailer {
        Retailer {
            district: "kathmandu ".into(),
            location: Some(GeoPoint {
                lat: 27.7172,
                lng: 85.3240,
            }),
        }
    }

    fn reasons(v: Vendor, l: Line) -> Vec<Ineligible> {
        let e = eligibility(&retailer(), &[l], &[v], &RoutingSettings::default());
        e.cells[0][0].clone()
    }

    #[test]
    fn each_hard_rule_has_its_reason() {
        assert!(reasons(vendor(1), line(1_000, 0)).is_empty());
        let mut v = vendor(1);
        v.active = false;
        assert_eq!(reasons(v, line(1_000, 0)), [Ineligible::Inactive]);
        let mut v = vendor(1);
        v.districts = vec!["Lalitpur".into()];
        assert_eq!(reasons(v, line(1_000, 0)), [Ineligible::OutOfArea]);
        let mut v = vendor(1);
        v.active_orders = 10;
        assert_eq!(reasons(v, line(1_000, 0)), [Ineligible::AtCapacity]);
        let mut v = vendor(1);
        v.capacity = 0; // no limit
        v.active_orders = 1_000;
        assert!(reasons(v, line(1_000, 0)).is_empty());
        // Five offers unanswered: no more, whatever room its open orders leave.
        let mut v = vendor(1);
        (v.active_orders, v.awaiting_orders) = (5, 5);
        assert_eq!(reasons(v, line(1_000, 0)), [Ineligible::UnansweredOffers]);
        let mut v = vendor(1);
        (v.active_orders, v.awaiting_orders) = (10, 5);
        assert_eq!(
            reasons(v, line(1_000, 0)),
            [Ineligible::AtCapacity, Ineligible::UnansweredOffers]
        );
        let mut v = vendor(1);
        (v.active_orders, v.awaiting_orders) = (5, 4);
        assert!(reasons(v, line(1_000, 0)).is_empty());
        let mut v = vendor(1);
        (v.awaiting_capacity, v.active_orders, v.awaiting_orders) = (0, 9, 9);
        assert!(reasons(v, line(1_000, 0)).is_empty(), "no limit on offers");
        assert_eq!(
            reasons(vendor(1), line(10_001, 0)),
            [Ineligible::ShortStock]
        );
        assert!(
            reasons(vendor(1), line(10_000, 0)).is_empty(),
            "stock equal to the quantity"
        );
        let mut v = vendor(1);
        v.offers[0].product_id = Uuid::from_u128(8);
        assert_eq!(reasons(v, line(1, 0)), [Ineligible::NoOffer]);
    }

    #[test]
    fn another_district_is_served_within_the_distance() {
        let mut near = vendor(1);
        near.districts = vec!["Lalitpur".into()];
        near.location = Some(GeoPoint {
            lat: 27.6588,
            lng: 85.3247,
        }); // ~6.5 km
        assert!(reasons(near.clone(), line(1, 0)).is_empty());
        near.location = Some(GeoPoint {
            lat: 28.2096,
            lng: 83.9856,
        }); // Pokhara
        assert_eq!(reasons(near, line(1, 0)), [Ineligible::OutOfArea]);
    }

    #[test]
    fn closed_vendors_wait_unless_nobody_is_open() {
        let (open, mut closed) = (vendor(1), vendor(2));
        closed.open_now = false;
        let s = RoutingSettings::default();
        let e = eligibility(
            &retailer(),
            &[line(1, 0)],
            &[open.clone(), closed.clone()],
            &s,
        );
        assert!(e.ok(0, 0));
        assert_eq!(e.cells[1][0], [Ineligible::Closed]);
        assert!(e.hours_relaxed.is_empty());
        // The only open vendor cannot supply anything: hours give way.
        let mut useless = open.clone();
        useless.active = false;
        let e = eligibility(&retailer(), &[line(1, 0)], &[useless, closed.clone()], &s);
        assert!(e.ok(1, 0));
        assert_eq!(e.hours_relaxed, [1]);
        // Line by line: the open vendor keeps the line it carries, the closed one may take
        // the line only it carries, instead of the order waiting for an operator.
        let mut other = line(1, 0);
        other.line_no = 2;
        other.product_id = Uuid::from_u128(99);
        let mut both = closed;
        both.offers.push(Offer {
            product_id: other.product_id,
            ..both.offers[0].clone()
        });
        let e = eligibility(&retailer(), &[line(1, 0), other], &[open, both], &s);
        assert!(e.ok(0, 0) && !e.ok(0, 1));
        assert_eq!(e.cells[1][0], [Ineligible::Closed]);
        assert!(e.ok(1, 1));
        assert_eq!(e.hours_relaxed, [2]);
    }

    #[test]
    fn volume_share_gives_way_when_it_would_leave_nobody() {
        let s = RoutingSettings::default();
        let mut big = vendor(1);
        big.offers[0].volume_30d_milli = 50_000; // 50 of 100 units sold in 30 days
        let small = vendor(2);
        let l = line(1_000, 100_000);
        // 40% exactly is allowed; above is not; a product without sales has no shares.
        assert!(!over_share(40_000, &l, &s));
        assert!(over_share(40_001, &l, &s));
        assert!(!over_share(40_001, &line(1_000, 0), &s));
        let e = eligibility(
            &retailer(),
            std::slice::from_ref(&l),
            &[big.clone(), small],
            &s,
        );
        assert_eq!(e.cells[0][0], [Ineligible::VolumeShare]);
        assert!(e.ok(1, 0));
        let e = eligibility(&retailer(), &[l], &[big], &s);
        assert!(e.ok(0, 0));
        assert_eq!(e.volume_relaxed, [1]);
    }
}
