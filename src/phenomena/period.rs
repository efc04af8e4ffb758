//! Periods: the year and quarter of a table cell, and the quarter or month a
//! release closes. Nothing finer than a quarter is ever a table dimension;
//! a month only names a monthly release and the month a contribution
//! counts in. A release holds cells of closed periods only.

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
    /// The last month of the period, as (year, month).
    pub fn last_month(self) -> (i32, u8) {
        match self {
            ReleasePeriod::Quarter(y, q) => (y, q * 3),
            ReleasePeriod::Month(y, m) => (y, m),
        }
    }

    /// The cadence this period belongs to.
    pub fn cadence(self) -> Cadence {
        match self {
            ReleasePeriod::Quarter(..) => Cadence::Quarter,
            ReleasePeriod::Month(..) => Cadence::Month,
        }
    }

    /// The newest quarter that has ended when the period ends. A release
    /// holds closed periods only, so this is its newest quarter cell: a
    /// monthly release inside a quarter holds the same cells as the
    /// release of the quarter before.
    fn last_quarter(self) -> (i32, u8) {
        let (y, m) = self.last_month();
        match m / 3 {
            0 => (y - 1, 4),
            q => (y, q),
        }
    }

    /// A release covers the calendar year before its last quarter's and
    /// that year up to the quarter, so every quarter has its predecessor
    /// and its year-earlier counterpart within reach of the trends.
    fn first_year(self) -> i32 {
        self.last_quarter().0 - 1
    }

    /// The first and last month the cells of a release cover.
    pub fn months(self) -> ((i32, u8), (i32, u8)) {
        let (y, q) = self.last_quarter();
        ((self.first_year(), 1), (y, q * 3))
    }

    /// The years of the cells of a release, oldest first: the years of its
    /// coverage that have ended.
    pub fn years(self) -> Vec<Period> {
        let (y, q) = self.last_quarter();
        let last = if q == 4 { y } else { y - 1 };
        (self.first_year()..=last).map(Period::Year).collect()
    }

    /// The quarters of the cells of a release, oldest first.
    pub fn quarters(self) -> Vec<Period> {
        let (y, q) = self.last_quarter();
        (self.first_year()..=y)
            .flat_map(|year| (1..=4u8).map(move |q| (year, q)))
            .filter(|&(year, quarter)| year < y || quarter <= q)
            .map(|(year, quarter)| Period::Quarter(year, quarter))
            .collect()
    }

    /// Whether a cell of this release counts a record of (year, month).
    pub fn covers(self, year: i32, month: u8) -> bool {
        let (first, last) = self.months();
        (first..=last).contains(&(year, month))
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

/// The month a contribution received in `received` counts in, given the
/// releases stored: the month received, or — when a release already
/// published a cell of that month — the first month after it that no
/// release has published. So a late referral never changes a published
/// cell; it counts in the first period still open.
pub fn counted_month(received: (i32, u8), released: &[ReleasePeriod]) -> (i32, u8) {
    let mut month = received;
    // Each step moves past the end of a release's coverage: it ends.
    while let Some(r) = released.iter().find(|r| r.covers(month.0, month.1)) {
        month = match r.months().1 {
            (y, 12) => (y + 1, 1),
            (y, m) => (y, m + 1),
        };
    }
    month
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
    fn a_release_covers_closed_periods_only() {
        let q3 = ReleasePeriod::Quarter(2026, 3);
        assert_eq!(q3.years(), vec![Period::Year(2025)], "2026 has not ended");
        let quarters = q3.quarters();
        assert_eq!(quarters.len(), 7);
        assert_eq!(quarters[0], Period::Quarter(2025, 1));
        assert_eq!(quarters[6], Period::Quarter(2026, 3));
        assert!(q3.covers(2025, 1) && q3.covers(2026, 9));
        assert!(!q3.covers(2024, 12) && !q3.covers(2026, 10));
        let q4 = ReleasePeriod::Quarter(2026, 4);
        assert_eq!(q4.years(), vec![Period::Year(2025), Period::Year(2026)]);
        assert_eq!(q4.quarters().len(), 8);
        // A month inside a quarter adds nothing: it holds the cells of the
        // quarter before, up to the month that closes a quarter.
        for m in [7, 8] {
            let month = ReleasePeriod::Month(2026, m);
            assert_eq!(month.months(), ReleasePeriod::Quarter(2026, 2).months());
            assert_eq!(month.quarters(), ReleasePeriod::Quarter(2026, 2).quarters());
            assert_eq!(month.years(), vec![Period::Year(2025)]);
            assert!(!month.covers(2026, 7));
        }
        let sep = ReleasePeriod::Month(2026, 9);
        assert_eq!(sep.quarters(), q3.quarters());
        assert_eq!(sep.years(), q3.years());
        let feb = ReleasePeriod::Month(2027, 2);
        assert_eq!(feb.months(), q4.months());
        assert_eq!(feb.years(), q4.years());
        assert_eq!(ReleasePeriod::Month(2027, 1).cadence(), Cadence::Month);
        assert_eq!(q4.cadence(), Cadence::Quarter);
    }

    #[test]
    fn a_late_contribution_counts_in_the_first_month_no_release_published() {
        let none: [ReleasePeriod; 0] = [];
        assert_eq!(counted_month((2026, 2), &none), (2026, 2));
        let released = [
            ReleasePeriod::Quarter(2025, 4),
            ReleasePeriod::Quarter(2026, 1),
        ];
        // 2024-01 .. 2026-03 are published.
        assert_eq!(counted_month((2026, 2), &released), (2026, 4));
        assert_eq!(counted_month((2024, 1), &released), (2026, 4));
        assert_eq!(counted_month((2026, 4), &released), (2026, 4));
        assert_eq!(counted_month((2023, 12), &released), (2023, 12));
        // A Q4 release moves a contribution into the next year.
        assert_eq!(
            counted_month((2025, 11), &[ReleasePeriod::Quarter(2025, 4)]),
            (2026, 1)
        );
        // A monthly release inside a quarter publishes none of it.
        let monthly = [ReleasePeriod::Month(2026, 7), ReleasePeriod::Month(2026, 8)];
        assert_eq!(counted_month((2026, 7), &monthly), (2026, 7));
        assert_eq!(counted_month((2026, 6), &monthly), (2026, 7));
        // Releases far apart leave months nobody published: a contribution
        // of such a month counts there (no later release reaches back).
        let apart = [
            ReleasePeriod::Quarter(2019, 4),
            ReleasePeriod::Quarter(2024, 2),
        ];
        assert_eq!(counted_month((2019, 3), &apart), (2020, 1));
        assert_eq!(counted_month((2023, 5), &apart), (2024, 7));
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
