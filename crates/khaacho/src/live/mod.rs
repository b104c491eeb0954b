//! Live updates over WebSocket (`/api/v1/ws`, DESIGN.md §14): tickets, the commit-ordered
//! feed of order events, the per-process hub that fans it out, and the socket protocol.
//!
//! Files: `tickets.rs` (single-use tickets), `feed.rs` (numbering events in commit order —
//! called by `orders::transition::consume`, imports nothing from `orders` — and reading
//! them), `hub.rs` (one task per process tails the feed and hands events to the sockets whose
//! scope may see them, through bounded queues), `session.rs` (one socket: topics, replay,
//! heartbeats, limits), `routes.rs` (the ticket route and the upgrade).

pub mod bench;
pub mod feed;
pub mod hub;
pub mod routes;
pub mod session;
pub mod tickets;
