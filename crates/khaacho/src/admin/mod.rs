//! Platform administration that is not about one business object: the job queue's dead
//! letters, the order-parsing agents' switch and breakers, the operators' alert inbox, and
//! the HTTP API's service levels with their minute check (`sla`), and the dashboards'
//! figures and CSV exports (`reports`).

pub mod agents;
pub mod alerts;
pub mod jobs;
pub mod mode;
pub mod reports;
pub mod sla;
