//! Vendors and fulfilment (DESIGN.md §12, DOMAIN.md "Routing to vendors").
//!
//! The rules are pure functions in the `khaacho-vendors` crate; this feature gathers their
//! facts from the database and will carry the order from `validated` to the retailer's door.
//! What exists today:
//! - [`facts`]: everything a routing decision needs about one order — the retailer, its
//!   priced lines with market prices and 30-day volumes, the vendors offering those products
//!   with their stock, hours, capacity and score;
//! - [`routes`]: `GET /api/v1/orders/{id}/routing`, the decision routing would take now
//!   (staff only; it changes nothing).
//!
//! Not yet: the routing step in the pipeline, fulfilments and offers with deadlines, vendor
//! actions, reassignment and the recurring jobs (vendor scores, price intelligence). Until
//! fulfilments exist, every vendor's workload is 0 and 30-day volumes count the priced lines
//! of live orders (the vendor whose offer priced the line).

pub mod facts;
pub mod routes;
