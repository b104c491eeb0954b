//! The floor: what every feature uses, importing nothing from the features or the top.
//!
//! - [`db`]: one handle over PostgreSQL and SQLite, transactions, the SQL macros;
//!   [`pg_tls`]: the PostgreSQL TLS mode when the URL names none;
//! - [`group_commit`]: many writers' items in one transaction;
//! - [`time`]: epoch milliseconds in storage, Nepal time at the edges;
//! - [`domain`]: units, quantities and money;
//! - [`scope`]: which rows a caller may see (the tenant scope);
//! - [`principal`]: who is calling and in which role;
//! - [`audit`]: the audit log, written in the transaction of the change;
//! - [`alerts`]: the operators' alert inbox, written in the transaction of what raised it;
//! - [`sla`]: the process's rolling record of HTTP requests (availability, latency, errors);
//! - [`work`]: the runtime that runs what holds transactions open, apart from HTTP;
//! - [`wire`]: problem errors, extractors, pages, cursors and query readers.
//!
//! ARCHITECTURE.md at the repository root gives the whole import structure.

pub mod alerts;
pub mod audit;
pub mod db;
pub mod domain;
pub mod group_commit;
pub mod mode;
pub mod pg_tls;
pub mod principal;
pub mod scope;
pub mod sla;
pub mod time;
pub mod trace;
pub mod wire;
pub mod work;
