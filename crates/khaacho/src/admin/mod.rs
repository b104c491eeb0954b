//! Platform administration that is not about one business object: the job queue's dead
//! letters and the order-parsing agents' switch and breakers.

pub mod agents;
pub mod jobs;
