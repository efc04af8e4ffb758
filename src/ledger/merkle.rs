//! The RFC 6962 tree over the leaf bytes, stored the way Go's sumdb/tlog
//! stores it (via the `tlog_tiles` port): every completed subtree hash is
//! kept once, at its "stored hash index", so proofs and roots need O(log n)
//! reads. This file adds what the crate lacks: an in-memory compact range for
//! streaming verification, and a way to drive its synchronous `HashReader`
//! from an async database (the indexes a computation reads depend only on
//! the sizes, never on hash values, so we learn them first and fetch them
//! in one query).

use std::cell::RefCell;
use std::collections::HashMap;

pub use tlog_tiles::Hash;
use tlog_tiles::{HashReader, node_hash, record_hash};

/// RFC 6962 leaf hash: SHA-256(0x00 || leaf bytes).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    record_hash(leaf)
}

/// The right edge of a growing tree: one hash per complete subtree, largest
/// first. Appending yields exactly the hashes tlog stores for that record.
#[derive(Clone, Default)]
pub struct CompactRange {
    size: u64,
    /// (height, hash), strictly decreasing heights.
    stack: Vec<(u32, Hash)>,
}

impl CompactRange {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the hashes to store for this record
    /// (the leaf, then every subtree it completes, bottom-up).
    pub fn push(&mut self, leaf: Hash) -> Vec<Hash> {
        let mut stored = vec![leaf];
        let mut cur = (0u32, leaf);
        while let Some(&(h, left)) = self.stack.last() {
            if h != cur.0 {
                break;
            }
            self.stack.pop();
            cur = (h + 1, node_hash(left, cur.1));
            stored.push(cur.1);
        }
        self.stack.push(cur);
        self.size += 1;
        stored
    }

    /// Stored-hash ids of the complete subtrees that make up the right edge
    /// of a tree of `size` leaves, largest first (what `resume` needs).
    pub fn edge_ids(size: u64) -> Vec<u64> {
        edge(size)
            .map(|(level, n)| tlog_tiles::stored_hash_index(level, n))
            .collect()
    }

    /// The compact range of a tree of `size` leaves from its edge hashes
    /// (in the order of `edge_ids`).
    pub fn resume(size: u64, hashes: &[Hash]) -> Self {
        let stack = edge(size)
            .map(|(level, _)| u32::from(level))
            .zip(hashes.iter().copied())
            .collect();
        Self { size, stack }
    }

    /// The RFC 6962 root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return tlog_tiles::EMPTY_HASH;
        };
        for &(_, left) in it {
            acc = node_hash(left, acc);
        }
        acc
    }
}

/// (level, index at that level) of each complete subtree on the right edge
/// of a tree of `size` leaves: one per set bit of `size`, largest first.
fn edge(size: u64) -> impl Iterator<Item = (u8, u64)> {
    (0..64u8)
        .rev()
        .filter(move |k| size & (1 << k) != 0)
        .map(move |k| {
            let start = size >> (k + 1) << (k + 1);
            (k, start >> k)
        })
}

/// A `HashReader` that either records the indexes a computation asks for
/// (returning placeholder hashes) or serves hashes fetched beforehand.
pub enum Reader {
    Recording(RefCell<Vec<u64>>),
    Fetched(HashMap<u64, Hash>),
}

impl Reader {
    pub fn recording() -> Self {
        Self::Recording(RefCell::new(Vec::new()))
    }

    /// The distinct indexes asked for, sorted.
    pub fn recorded(self) -> Vec<u64> {
        let Self::Recording(cell) = self else {
            return Vec::new();
        };
        let mut v = cell.into_inner();
        v.sort_unstable();
        v.dedup();
        v
    }
}

impl HashReader for Reader {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        match self {
            Self::Recording(cell) => {
                cell.borrow_mut().extend_from_slice(indexes);
                Ok(vec![Hash::default(); indexes.len()])
            }
            Self::Fetched(map) => indexes
                .iter()
                .map(|i| {
                    map.get(i).copied().ok_or(tlog_tiles::Error::InvalidInput(
                        "missing stored hash".into(),
                    ))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compact range must store exactly what tlog stores, and agree
    /// with its roots, for every size up to 300.
    #[test]
    fn compact_range_matches_tlog() {
        let mut cr = CompactRange::default();
        let mut store: HashMap<u64, Hash> = HashMap::new();
        for n in 0..300u64 {
            let leaf = format!("leaf {n}");
            let expected =
                tlog_tiles::stored_hashes(n, leaf.as_bytes(), &Reader::Fetched(store.clone()))
                    .unwrap();
            let got = cr.push(leaf_hash(leaf.as_bytes()));
            assert_eq!(got, expected, "stored hashes of record {n}");
            let first = tlog_tiles::stored_hash_index(0, n);
            for (i, h) in got.into_iter().enumerate() {
                store.insert(first + i as u64, h);
            }
            assert_eq!(
                cr.root(),
                tlog_tiles::tree_hash(n + 1, &Reader::Fetched(store.clone())).unwrap()
            );
        }
    }

    /// Resuming from the stored edge hashes continues exactly like the
    /// range that pushed every leaf.
    #[test]
    fn resume_from_stored_edge() {
        let mut cr = CompactRange::default();
        let mut store = HashMap::new();
        for n in 0..200u64 {
            let first = tlog_tiles::stored_hash_index(0, n);
            for (i, h) in cr.push(leaf_hash(&n.to_be_bytes())).into_iter().enumerate() {
                store.insert(first + i as u64, h);
            }
            let size = n + 1;
            let edge: Vec<Hash> = CompactRange::edge_ids(size)
                .iter()
                .map(|id| store[id])
                .collect();
            let mut resumed = CompactRange::resume(size, &edge);
            assert_eq!(resumed.root(), cr.root(), "root at size {size}");
            let mut continued = cr.clone();
            let leaf = leaf_hash(b"next");
            assert_eq!(
                resumed.push(leaf),
                continued.push(leaf),
                "next push at size {size}"
            );
        }
    }

    #[test]
    fn recorded_indexes_are_enough() {
        let mut cr = CompactRange::default();
        let mut store = HashMap::new();
        for n in 0..100u64 {
            let first = tlog_tiles::stored_hash_index(0, n);
            for (i, h) in cr.push(leaf_hash(&[n as u8])).into_iter().enumerate() {
                store.insert(first + i as u64, h);
            }
        }
        let rec = Reader::recording();
        let _ = tlog_tiles::prove_record(77, 13, &rec);
        let need = rec.recorded();
        let subset: HashMap<u64, Hash> = need.iter().map(|i| (*i, store[i])).collect();
        let proof = tlog_tiles::prove_record(77, 13, &Reader::Fetched(subset)).unwrap();
        let root = tlog_tiles::tree_hash(77, &Reader::Fetched(store.clone())).unwrap();
        tlog_tiles::check_record(&proof, 77, root, 13, leaf_hash(&[13])).unwrap();
    }
}
