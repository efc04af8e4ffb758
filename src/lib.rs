//! ketenpoort: the exchange gateway of the Drenthe anti-trafficking covenant.
//!
//! The request path reads top to bottom through these modules: [`server`]
//! (TLS) → `api` (tower layers, routes, problem+json) → `auth` (JWT →
//! `Principal`) → handlers. Every module is private to the crate; the
//! binary's only way in is [`cli::main`].

pub mod cli;

mod api;
mod auth;
mod boundary;
mod config;
mod console;
mod crypto;
mod demo;
mod identifiers;
mod keys;
mod ledger;
mod model;
mod partners;
mod phenomena;
mod policy;
mod problem;
mod projection;
mod request;
mod retention;
mod server;
mod signals;
mod spreadsheet;
mod store;
mod telemetry;
mod tls;
mod witness;
