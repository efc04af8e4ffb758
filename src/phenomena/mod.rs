//! Phenomenon tables: the only thing that crosses to the RIEC (invariant 1).
//!
//! A signal referred to a non-member contributes its category codes to the
//! tables ([`Contribution`], recorded in the referral's transaction). At
//! fixed moments — the close of each quarter or month — a release is built
//! from the catalogue in the policy data ([`catalogue`]), every cell
//! protected by the cell key method ([`cellkey`]), and stored; it is served
//! as stored and never recomputed. The types a release is made of hold
//! category codes, periods and counts only.
//!
//! A published value depends only on the records in its cell, so a cell
//! whose value changed between releases proves a record was added. Hence
//! a release holds closed periods only ([`ReleasePeriod::months`]), and a
//! contribution to a period some release already published counts in the
//! first month none has ([`period::counted_month`]): every cell is
//! published with one value, in every release that shows it.

pub mod catalogue;
pub mod cellkey;
pub mod formats;
pub mod period;
pub mod tables;

mod contribution;
mod release;

pub use catalogue::{Catalogue, Code};
pub use cellkey::{PERTURBATION_KEY, Perturbation, RecordKey};
pub use contribution::{Contribution, contribute};
pub use period::{Period, ReleasePeriod};
pub(crate) use release::release_periods;
pub use release::{Phenomena, Release, ReleasePage};
