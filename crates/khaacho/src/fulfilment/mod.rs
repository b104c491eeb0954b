//! Vendors and fulfilment (DESIGN.md §12, DOMAIN.md "Routing to vendors"): from a
//! `validated` order to the retailer's door.
//!
//! The rules are pure functions in the `khaacho-vendors` crate; this feature gathers their
//! facts and carries the order:
//! - [`routing`]: the routing step (job `order.route`, batched) — vendor parts, each offered
//!   to its vendor with a deadline, the decision stored with its candidates and scores; no
//!   vendor → `on_hold` (`vendor_unavailable`) and an alert;
//! - [`service`]: vendor actions on a part (accept with stock reserved, reject, dispatch,
//!   deliver with quantities), reassignment to the next vendor (at most
//!   `fulfilment.max_reassignments` times), the order following its slowest part, the credit
//!   posting at delivery, withdrawing parts when an order is cancelled;
//! - [`jobs`]: the minute tick — expired offers move on, delivered orders complete
//!   themselves after `fulfilment.auto_complete_hours`;
//! - [`facts`]: what a routing decision reads (retailers, offers, vendors with workload,
//!   30-day volumes), once per batch;
//! - [`scores`]: the hourly vendor score (job `fulfilment.score_vendors`) from the last 30
//!   days of offers, parts and sales, history in `vendor_scores`, the latest in `vendors.score`
//!   (routing's reliability);
//! - [`routes`]: the vendor's and the operator's HTTP view of parts and offers, the routing
//!   preview; [`score_routes`]: a vendor's score.
//!
//! Imports: `orders` (its repository, model and transition service — the one way an order
//! changes), `catalog` (stock on the offer rows), `credit` (the posting at delivery),
//! `parties`. The order pipeline hands validated orders here by enqueueing
//! [`routing::RouteOrders`]; order actions call [`service::cancel_parts`].

pub mod batch;
pub mod facts;
pub mod jobs;
pub mod repo;
pub mod routes;
pub mod routing;
pub mod score_routes;
pub mod scores;
pub mod service;
