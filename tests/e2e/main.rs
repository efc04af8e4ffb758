//! Black-box end-to-end tests: every test starts the real `ketenpoort`
//! binary (`serve --demo`) on a fresh data directory and talks HTTPS to it,
//! or runs its CLI. One test crate, so the suite links once.
//!
//! ```text
//! cargo test --test e2e                                   # SQLite
//! KETENPOORT_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo test --test e2e                               # PostgreSQL
//! ```
//!
//! - `KETENPOORT_TEST_DATABASE_URL`: run every server on PostgreSQL, each in
//!   a fresh schema `kp_<random>` of that database (dropped afterwards unless
//!   `KETENPOORT_TEST_KEEP_SCHEMAS` is set).
//! - `KETENPOORT_TEST_BIN`: test another build of the binary.
//!
//! No `KETENPOORT_*` variable of the caller's environment reaches the
//! processes under test; tests set what they need.

mod api_rules;
mod at_rest;
mod auth;
mod boundary;
mod cli;
mod client;
mod common;
mod console;
mod covenant;
mod deploy;
mod faults;
mod http;
mod idempotency;
mod issuers;
mod leaves;
mod ledger;
mod lifecycle;
mod oauth;
mod oracle;
mod phenomena;
mod policy;
mod side_channels;
mod telemetry;
mod witness;
