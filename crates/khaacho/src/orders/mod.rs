//! Orders: durable intake, the state machine, the processing pipeline and operator actions.

pub mod actions;
pub mod group_commit;
pub mod intake;
pub mod model;
pub mod parse;
pub mod pipeline;
pub mod repo;
pub mod routes;
