//! The data model at the bottom: plain types that the store reads and
//! writes and the modules above use. It imports nothing of its users.

pub mod client;
pub mod partner;
pub mod signal;
