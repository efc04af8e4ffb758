//! Disclosure control by the cell key method (as statistical offices use it
//! for census tables: the ABS, Destatis, CBS).
//!
//! Every record has a secret random record key. The cell key of a cell is
//! the sum of the record keys of the records in it, modulo 2^64: the same
//! set of records always has the same cell key, in every table, margin and
//! release. A perturbation table maps (true count, cell key) to the
//! published count: zero mean, never more than `max_deviation` away, and
//! never 1 or 2 (small counts go to 0 or to 3 and more). Where in a row's
//! distribution a cell lands is decided by a keyed hash of its cell key
//! (HMAC with `keys/phenomena.key`), so neither the record keys in the
//! database nor the parameters alone let anyone recompute the noise.

use anyhow::ensure;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Key-store name of the perturbation secret.
pub const PERTURBATION_KEY: &str = "phenomena";

/// Published counts are never 1 or 2: a count below this is published as 0.
pub const SMALLEST_PUBLISHED: i64 = 3;

/// A record's secret key. Random, permanent, never exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordKey(pub u64);

impl RecordKey {
    pub fn generate() -> Self {
        let mut b = [0u8; 8];
        SystemRandom::new().fill(&mut b).expect("system random");
        Self(u64::from_be_bytes(b))
    }

    /// The key as the database stores it (a signed 64-bit integer).
    pub fn stored(self) -> i64 {
        self.0 as i64
    }

    pub fn from_stored(v: i64) -> Self {
        Self(v as u64)
    }
}

/// The cell key of a set of records: their record keys summed mod 2^64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CellKey(pub u64);

impl CellKey {
    pub fn add(&mut self, k: RecordKey) {
        self.0 = self.0.wrapping_add(k.0);
    }
}

/// One row of the perturbation table: deviations with cumulative
/// thresholds on [0, 2^64).
#[derive(Clone, Debug)]
struct Row {
    steps: Vec<(i64, u64)>,
}

impl Row {
    fn pick(&self, position: u64) -> i64 {
        self.steps
            .iter()
            .find(|(_, upto)| position < *upto)
            .or(self.steps.last())
            .map_or(0, |(d, _)| *d)
    }
}

/// The perturbation table and the secret that places cells in it.
pub struct Perturbation {
    rows: Vec<Row>,
    key: hmac::Key,
}

/// The probabilities of one row: deviation → probability.
pub fn row_distribution(count: i64, max_deviation: i64, variance: f64) -> Vec<(i64, f64)> {
    if count == 0 {
        return vec![(0, 1.0)];
    }
    let allowed: Vec<i64> = (-max_deviation..=max_deviation)
        .filter(|d| {
            let p = count + d;
            p == 0 || p >= SMALLEST_PUBLISHED
        })
        .collect();
    let neg: Vec<i64> = allowed.iter().copied().filter(|d| *d < 0).collect();
    let pos: Vec<i64> = allowed.iter().copied().filter(|d| *d > 0).collect();
    if neg.is_empty() || pos.is_empty() {
        return vec![(0, 1.0)];
    }
    // Any zero-mean distribution is a mixture of two-point zero-mean ones:
    // take every pair (a < 0 < b) with equal weight (a with probability
    // b/(b-a), b with -a/(b-a); its variance is -ab)...
    let w = 1.0 / (neg.len() * pos.len()) as f64;
    let mut p: std::collections::BTreeMap<i64, f64> = Default::default();
    let mut pair_variance = 0.0;
    for &a in &neg {
        for &b in &pos {
            let (af, bf) = (a as f64, b as f64);
            *p.entry(a).or_default() += w * bf / (bf - af);
            *p.entry(b).or_default() += w * -af / (bf - af);
            pair_variance += w * -af * bf;
        }
    }
    // ...then mix with "no change" to bring the variance down to the one
    // configured, where the row allows no change (counts 1 and 2 cannot stay).
    if allowed.contains(&0) && variance < pair_variance {
        let keep = variance / pair_variance;
        for v in p.values_mut() {
            *v *= keep;
        }
        *p.entry(0).or_default() += 1.0 - keep;
    }
    p.into_iter().collect()
}

/// The largest variance a full row (all deviations allowed) reaches.
pub fn max_variance(max_deviation: i64) -> f64 {
    let m = (max_deviation as f64 + 1.0) / 2.0;
    m * m
}

impl Perturbation {
    pub fn new(max_deviation: u32, variance: f64, secret: &[u8; 32]) -> anyhow::Result<Self> {
        let d = i64::from(max_deviation);
        ensure!(
            (2..=20).contains(&d),
            "phenomena.max_deviation must be 2 to 20 (with less, a count of 1 cannot move by zero on average)"
        );
        ensure!(
            variance > 0.0 && variance <= max_variance(d),
            "phenomena.variance must be above 0 and at most {} for max_deviation {d}",
            max_variance(d)
        );
        // Counts from max_deviation + 3 on have every deviation available:
        // their rows are all alike.
        let rows = (0..=d + SMALLEST_PUBLISHED)
            .map(|n| {
                let mut cumulative = 0.0;
                let steps = row_distribution(n, d, variance)
                    .into_iter()
                    .map(|(dev, prob)| {
                        cumulative += prob;
                        (dev, (cumulative * 18_446_744_073_709_551_616.0) as u64)
                    })
                    .collect();
                Row { steps }
            })
            .collect();
        Ok(Self {
            rows,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// The published count of a cell with `count` records and cell key `ck`.
    pub fn publish(&self, count: u64, ck: CellKey) -> u64 {
        let n = count.min(i64::MAX as u64) as i64;
        let row = &self.rows[(n as usize).min(self.rows.len() - 1)];
        let tag = hmac::sign(
            &self.key,
            &[b"ckm1".as_slice(), &ck.0.to_be_bytes()].concat(),
        );
        let position = u64::from_be_bytes(tag.as_ref()[..8].try_into().expect("8 bytes"));
        (n + row.pick(position)).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_zero_mean_bounded_deviation_and_no_small_counts() {
        for d in 2..=6 {
            for v in [0.25, 1.0, max_variance(d)] {
                for n in 0..40 {
                    let row = row_distribution(n, d, v);
                    let total: f64 = row.iter().map(|(_, p)| p).sum();
                    let mean: f64 = row.iter().map(|(dev, p)| *dev as f64 * p).sum();
                    assert!((total - 1.0).abs() < 1e-12, "n={n} d={d}: {total}");
                    assert!(mean.abs() < 1e-12, "n={n} d={d} v={v}: mean {mean}");
                    for (dev, p) in &row {
                        assert!(*p > 0.0, "n={n}: a deviation with probability 0");
                        assert!(dev.abs() <= d);
                        let published = n + dev;
                        assert!(published == 0 || published >= 3, "n={n} -> {published}");
                    }
                    if n >= d + 3 {
                        let var: f64 = row.iter().map(|(dev, p)| (*dev * *dev) as f64 * p).sum();
                        assert!((var - v).abs() < 1e-9, "n={n} d={d}: variance {var} != {v}");
                    }
                }
            }
        }
        assert_eq!(row_distribution(0, 3, 1.0), vec![(0, 1.0)]);
    }

    #[test]
    fn counts_of_one_and_two_never_survive() {
        let p = Perturbation::new(3, 1.0, &[1; 32]).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..5000u64 {
            let ck = CellKey(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            for n in 1..=2 {
                let v = p.publish(n, ck);
                assert!(v == 0 || (3..=n + 3).contains(&v), "{n} -> {v}");
                seen.insert((n, v));
            }
            assert_eq!(p.publish(0, ck), 0);
        }
        // Both ways are taken: to zero and upwards.
        assert!(seen.contains(&(1, 0)) && seen.contains(&(1, 3)), "{seen:?}");
        assert!(seen.contains(&(2, 0)) && seen.contains(&(2, 3)), "{seen:?}");
    }

    #[test]
    fn the_same_cell_key_always_gives_the_same_value_and_the_secret_matters() {
        let a = Perturbation::new(3, 1.0, &[1; 32]).unwrap();
        let b = Perturbation::new(3, 1.0, &[2; 32]).unwrap();
        let mut differ = 0;
        for i in 0..2000u64 {
            let ck = CellKey(i.wrapping_mul(0x2545_f491_4f6c_dd1d));
            assert_eq!(a.publish(50, ck), a.publish(50, ck));
            differ += usize::from(a.publish(50, ck) != b.publish(50, ck));
        }
        assert!(
            differ > 200,
            "another secret perturbs differently ({differ})"
        );
    }

    #[test]
    fn the_cell_key_depends_on_the_set_only() {
        let keys = [RecordKey(u64::MAX), RecordKey(7), RecordKey(1 << 63)];
        let (mut x, mut y) = (CellKey::default(), CellKey::default());
        for k in keys {
            x.add(k);
        }
        for k in keys.iter().rev() {
            y.add(*k);
        }
        assert_eq!(x, y);
        assert_eq!(
            RecordKey::from_stored(RecordKey(u64::MAX).stored()),
            RecordKey(u64::MAX)
        );
    }

    #[test]
    fn parameters_are_checked() {
        assert!(Perturbation::new(1, 0.5, &[0; 32]).is_err());
        assert!(Perturbation::new(3, 0.0, &[0; 32]).is_err());
        assert!(Perturbation::new(3, 4.5, &[0; 32]).is_err());
        assert!(Perturbation::new(3, 4.0, &[0; 32]).is_ok());
    }

    #[test]
    fn large_counts_are_perturbed_around_the_truth() {
        let p = Perturbation::new(3, 1.0, &[9; 32]).unwrap();
        let (mut sum, mut sq, n) = (0i64, 0i64, 20_000u64);
        for i in 0..n {
            let v = p.publish(100, CellKey(i.wrapping_mul(0xff51_afd7_ed55_8ccd))) as i64 - 100;
            assert!(v.abs() <= 3);
            sum += v;
            sq += v * v;
        }
        let mean = sum as f64 / n as f64;
        let var = sq as f64 / n as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
    }
}
