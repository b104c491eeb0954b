//! Orders: durable intake for every channel, the state machine and the one transition
//! service every change goes through, the processing pipeline, people's actions, and who may
//! see what of an order.

pub mod actions;
pub mod backpressure;
pub mod confirmations;
pub mod counts;
pub mod detail;
pub mod intake;
pub mod model;
pub mod pipeline;
pub mod repo;
pub mod routes;
pub mod transition;
pub mod visibility;
