//! Platform administration that is not about one business object: the job queue's dead
//! letters, the order-parsing agents' switch and breakers, and the operators' alert inbox.

pub mod agents;
pub mod alerts;
pub mod jobs;
