//! Khaacho: the order platform for wholesale trade in Nepal.
//!
//! One library behind one binary. Features are modules (`orders`, `catalog`, `parties`),
//! each with its routes, services and repositories; `queue` is the database-backed job
//! queue; `db` hides the two storage backends (PostgreSQL, SQLite) behind one handle.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod app;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod maintenance;
pub mod orders;
pub mod parties;
pub mod queue;
pub mod seed;
pub mod server;
pub mod telemetry;
