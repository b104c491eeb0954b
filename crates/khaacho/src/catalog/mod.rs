//! The catalogue: products, vendors' offers with quantity tiers, pricing, CSV import/export.

pub mod cache;
pub mod csv_io;
pub mod prices;
pub mod pricing;
pub mod repo;
pub mod routes;
pub mod service;
