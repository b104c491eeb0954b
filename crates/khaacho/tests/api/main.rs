//! Black-box suite: the app over HTTP on SQLite or PostgreSQL (see helpers.rs).
#![allow(clippy::unwrap_used)]

mod backpressure;
mod bad_input;
mod catalog;
mod channels;
mod console;
mod credit;
mod credit_controls;
mod credit_messages;
mod dashboards;
mod fulfilment;
mod helpers;
mod hostile;
mod live;
mod modes;
mod notifications;
mod ops;
mod orders;
mod process;
mod queue;
mod reports;
mod routing;
mod security;
mod sla;
mod spine;
mod text_orders;
mod traces;
mod vendor_scores;
mod webhooks;
