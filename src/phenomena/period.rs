//! Periods: the year and quarter of a table cell, and the quarter or month a
//! release closes. Nothing finer than a quarter is ever a table dimension;
//! a month only says where a monthly release is cut off.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::Cadence;

/// The period of a table cell: `2026` or `2026-Q3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Year(i32),
    Quarter(i32, u8),
}

/// What a release closes: `2026-Q3` (quarterly) or `2026-08` (monthly).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReleasePeriod {
    Quarter(i32, u8),
    Month(i32, u8),
}

fn quarter_of(month: u8) -> u8 {
    (month - 1) / 3 + 1
}

impl Period {
    /// The quarter before this one (quarters only).
    pub fn previous_quarter(self) -> Option<Period> {
        match self {
            Period::Quarter(y, 1) => Some(Period::Quarter(y - 1, 4)),
            Period::Quarter(y, q) => Some(Period::Quarter(y, q - 1)),
            Period::Year(_) => None,
        }
    }

    /// The same quarter a year earlier (quarters only).
    pub fn same_quarter_previous_year(self) -> Option<Period> {
        match self {
            Period::Quarter(y, q) => Some(Period::Quarter(y - 1, q)),
            Period::Year(_) => None,
        }
    }
}

impl ReleasePeriod {
    /// The last month the release covers, as (year, month).
    pub fn last_month(self) -> (i32, u8) {
        match self {
            ReleasePeriod::Quarter(y, q) => (y, q * 3),
            ReleasePeriod::Month(y, m) => (y, m),
        }
    }

    /// A release covers the previous calendar year and its own year up to
    /// and including its period, so every quarter has its predecessor and
    /// its year-earlier counterpart within reach of the trends.
    pub fn first_year(self) -> i32 {
        self.last_month().0 - 1
    }

    /// The years of the cells of a release, oldest first (the last one runs
    /// to the release period: year to date).
    pub fn years(self) -> Vec<Period> {
        let (y, _) = self.last_month();
        (self.first_year()..=y).map(Period::Year).collect()
    }

    /// The quarters of the cells of a release, oldest first (the last one
    /// ends with the release period).
    pub fn quarters(self) -> Vec<Period> {
        let (y, m) = self.last_month();
        let mut out = Vec::new();
        for year in self.first_year()..=y {
            for q in 1..=4u8 {
                if year < y || q <= quarter_of(m) {
                    out.push(Period::Quarter(year, q));
                }
            }
        }
        out
    }

    /// Whether a record received in (year, month) counts in this release.
    pub fn covers(self, year: i32, month: u8) -> bool {
        year >= self.first_year() && (year, month) <= self.last_month()
    }

    /// The period that closed most recently before `today`.
    pub fn last_closed(cadence: Cadence, today: time::Date) -> Self {
        let (y, m) = (today.year(), today.month() as u8);
        match cadence {
            Cadence::Quarter => match quarter_of(m) {
                1 => ReleasePeriod::Quarter(y - 1, 4),
                q => ReleasePeriod::Quarter(y, q - 1),
            },
            Cadence::Month => match m {
                1 => ReleasePeriod::Month(y - 1, 12),
                m => ReleasePeriod::Month(y, m - 1),
            },
        }
    }

    /// The period of the same kind just before this one.
    pub fn previous(self) -> Self {
        match self {
            ReleasePeriod::Quarter(y, 1) => ReleasePeriod::Quarter(y - 1, 4),
            ReleasePeriod::Quarter(y, q) => ReleasePeriod::Quarter(y, q - 1),
            ReleasePeriod::Month(y, 1) => ReleasePeriod::Month(y - 1, 12),
            ReleasePeriod::Month(y, m) => ReleasePeriod::Month(y, m - 1),
        }
    }

    /// Whether the period has ended before `today`.
    pub fn is_closed(self, today: time::Date) -> bool {
        self.last_month() < (today.year(), today.month() as u8)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Year(y) => write!(f, "{y:04}"),
            Period::Quarter(y, q) => write!(f, "{y:04}-Q{q}"),
        }
    }
}

impl fmt::Display for ReleasePeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleasePeriod::Quarter(y, q) => write!(f, "{y:04}-Q{q}"),
            ReleasePeriod::Month(y, m) => write!(f, "{y:04}-{m:02}"),
        }
    }
}

fn year(s: &str) -> Option<i32> {
    (s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
        .filter(|y| (1900..=9999).contains(y))
}

impl FromStr for Period {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.split_once("-Q") {
            None => year(s).map(Period::Year).ok_or(()),
            Some((y, q)) => match (year(y), q) {
                (Some(y), "1" | "2" | "3" | "4") => {
                    Ok(Period::Quarter(y, q.parse().map_err(|_| ())?))
                }
                _ => Err(()),
            },
        }
    }
}

impl FromStr for ReleasePeriod {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        if let Ok(Period::Quarter(y, q)) = s.parse::<Period>() {
            return Ok(ReleasePeriod::Quarter(y, q));
        }
        let (y, m) = s.split_once('-').ok_or(())?;
        let month: u8 = (m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()))
            .then(|| m.parse().ok())
            .flatten()
            .filter(|m| (1..=12).contains(m))
            .ok_or(())?;
        Ok(ReleasePeriod::Month(year(y).ok_or(())?, month))
    }
}

macro_rules! as_string {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse()
                    .map_err(|_| serde::de::Error::custom(concat!("not ", $what)))
            }
        }
    };
}

as_string!(Period, "a year or quarter (2026, 2026-Q3)");
as_string!(ReleasePeriod, "a quarter or month (2026-Q3, 2026-08)");

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn codes_round_trip_and_nothing_finer_parses_as_a_cell_period() {
        for s in ["2026", "2026-Q1", "2026-Q4"] {
            assert_eq!(s.parse::<Period>().unwrap().to_string(), s);
        }
        for s in ["2026-Q3", "2026-08", "2026-12"] {
            assert_eq!(s.parse::<ReleasePeriod>().unwrap().to_string(), s);
        }
        for bad in [
            "2026-Q5",
            "2026-Q0",
            "26",
            "2026-08-01",
            "2026-13",
            "2026-8",
            "x",
            "",
        ] {
            assert!(bad.parse::<ReleasePeriod>().is_err(), "{bad}");
        }
        for bad in ["2026-08", "2026-08-01", "2026-Q"] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
    }

    #[test]
    fn coverage_runs_from_the_previous_year_to_the_period() {
        let q3 = ReleasePeriod::Quarter(2026, 3);
        assert_eq!(q3.years(), vec![Period::Year(2025), Period::Year(2026)]);
        let quarters = q3.quarters();
        assert_eq!(quarters.len(), 7);
        assert_eq!(quarters[0], Period::Quarter(2025, 1));
        assert_eq!(quarters[6], Period::Quarter(2026, 3));
        assert!(q3.covers(2025, 1) && q3.covers(2026, 9));
        assert!(!q3.covers(2024, 12) && !q3.covers(2026, 10));
        let aug = ReleasePeriod::Month(2026, 8);
        assert_eq!(aug.quarters().last(), Some(&Period::Quarter(2026, 3)));
        assert!(aug.covers(2026, 8) && !aug.covers(2026, 9));
    }

    #[test]
    fn closed_periods() {
        let today = date!(2026 - 11 - 28);
        assert_eq!(
            ReleasePeriod::last_closed(Cadence::Quarter, today),
            ReleasePeriod::Quarter(2026, 3)
        );
        assert_eq!(
            ReleasePeriod::last_closed(Cadence::Month, today),
            ReleasePeriod::Month(2026, 10)
        );
        assert_eq!(
            ReleasePeriod::last_closed(Cadence::Quarter, date!(2026 - 02 - 01)),
            ReleasePeriod::Quarter(2025, 4)
        );
        assert_eq!(
            ReleasePeriod::last_closed(Cadence::Month, date!(2026 - 01 - 31)),
            ReleasePeriod::Month(2025, 12)
        );
        assert_eq!(
            ReleasePeriod::Quarter(2026, 1).previous(),
            ReleasePeriod::Quarter(2025, 4)
        );
        assert_eq!(
            ReleasePeriod::Month(2026, 1).previous(),
            ReleasePeriod::Month(2025, 12)
        );
        assert!(ReleasePeriod::Quarter(2026, 3).is_closed(today));
        assert!(!ReleasePeriod::Quarter(2026, 4).is_closed(today));
        assert!(!ReleasePeriod::Month(2026, 11).is_closed(today));
        assert_eq!(
            Period::Quarter(2026, 1).previous_quarter(),
            Some(Period::Quarter(2025, 4))
        );
        assert_eq!(
            Period::Quarter(2026, 2).same_quarter_previous_year(),
            Some(Period::Quarter(2025, 2))
        );
    }
}
