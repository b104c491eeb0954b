//! Signed outbound webhooks for vendor systems (issue 11; DESIGN §13): subscriptions (a
//! vendor's own, hearing of its own parts through the vendor visibility policy, or
//! staff-wide), deliveries written in the transaction of the order change by the
//! `order.changed` consumer (`events`), and the sender job (`sender`): HMAC-SHA256 with a
//! timestamp (`Khaacho-Signature`, `khaacho_auth::webhook::sign`), a per-subscription
//! secret, retries after 1, 5, 15, 30, 60 minutes then `dead`, and a log of every attempt.
//! Subscriber URLs must be `https://` to public addresses (`urls`, against request forgery).

pub mod events;
pub mod repo;
pub mod routes;
pub mod sender;
pub mod urls;
