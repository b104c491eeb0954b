//! Khaacho: the order platform for wholesale trade in Nepal.
//!
//! One library behind one binary, in three floors (ARCHITECTURE.md has the rules):
//! - the floor: [`base`] (database handle, time, domain values, tenant scope, principal,
//!   audit log, wire helpers) and [`queue`] (the database job queue, generic over what its
//!   jobs run with); neither imports anything above it;
//! - the features: [`orders`] (intake, the transition service, the pipeline steps),
//!   [`credit`] (accounts, holds, ledger, payments, risk facts), [`catalog`], [`parties`], [`auth`], [`admin`], [`maintenance`]; each brings its routes,
//!   services and repositories;
//! - the top: [`app`] (the handle jobs and handlers run with), [`config`], [`http`] (the one
//!   router and its middleware), [`jobs`] (the one job registry), [`server`], [`seed`],
//!   [`telemetry`].

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod app;
pub mod auth;
pub mod base;
pub mod catalog;
pub mod channels;
pub mod config;
pub mod console;
pub mod credit;
pub mod fulfilment;
pub mod http;
pub mod jobs;
pub mod live;
pub mod maintenance;
pub mod orders;
pub mod parties;
pub mod queue;
pub mod seed;
pub mod server;
pub mod telemetry;
pub mod webhooks;
