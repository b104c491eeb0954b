//! The catalogue: products, vendors' offers with quantity tiers, pricing, CSV import/export,
//! price intelligence (on read: [`prices`]; snapshots and alerts every 4 hours:
//! [`intelligence`]).

pub mod cache;
pub mod csv_io;
pub mod intelligence;
pub mod prices;
pub mod pricing;
pub mod repo;
pub mod routes;
pub mod service;
