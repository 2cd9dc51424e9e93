//! The RFC 6962 Merkle tree over the audit events, as Go's `sumdb/tlog` lays it out
//! (`tlog_tiles`): every node hash is stored once, at `stored_hash_index(level, n)`, so
//! appending an event writes one leaf and the subtrees it completes, and any root or
//! proof needs at most a few dozen stored hashes.
//!
//! `tlog_tiles` reads stored hashes through a synchronous [`HashReader`], and our hashes
//! live in the database behind `async`. Each of its functions asks for every hash it
//! needs in one call, so the store runs a computation against [`Known`], fetches what it
//! says is missing, and runs it again (see `store::log`).

use std::cell::RefCell;
use std::collections::HashMap;

pub use tlog_tiles::{EMPTY_HASH, Hash, HashReader, stored_hash_index};

/// Why a proof does not hold or a tree computation failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{0}")]
    Tlog(#[from] tlog_tiles::Error),
    #[error("index {index} is not in a tree of {size} events")]
    OutOfRange { index: u64, size: u64 },
    #[error("a consistency proof needs 1 <= from <= to, got from {from} to {to}")]
    BadRange { from: u64, to: u64 },
    #[error("a proof hash is not 32 bytes of base64")]
    BadHash,
}

/// Stored hashes fetched so far for a computation. A read of any hash not here fails the
/// computation and notes the index, so the caller can fetch what is missing and run it
/// again (`tlog_tiles` asks for everything it needs in one read, so twice is enough).
#[derive(Default)]
pub struct Known {
    pub hashes: HashMap<u64, Hash>,
    missing: RefCell<Vec<u64>>,
}

impl Known {
    /// The indexes asked for and not known, emptied.
    pub fn take_missing(&self) -> Vec<u64> {
        std::mem::take(&mut *self.missing.borrow_mut())
    }

    pub fn insert(&mut self, index: u64, h: Hash) {
        self.hashes.insert(index, h);
    }
}

impl HashReader for Known {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let missing: Vec<u64> = indexes
            .iter()
            .filter(|i| !self.hashes.contains_key(i))
            .copied()
            .collect();
        if !missing.is_empty() {
            self.missing.borrow_mut().extend(missing);
            return Err(tlog_tiles::Error::IndexesNotInTree);
        }
        Ok(indexes.iter().map(|i| self.hashes[i]).collect())
    }
}

/// The hash of a leaf: SHA-256 over 0x00 and the leaf's bytes.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    tlog_tiles::record_hash(bytes)
}

/// The hashes to store, from `stored_hash_index(0, n)` on, when leaf `n` (0-based) is
/// appended to a tree of `n` leaves.
pub fn appended(n: u64, leaf: Hash, r: &impl HashReader) -> Result<Vec<Hash>, TreeError> {
    Ok(tlog_tiles::stored_hashes_for_record_hash(n, leaf, r)?)
}

/// The root hash of the first `size` leaves.
pub fn root(size: u64, r: &impl HashReader) -> Result<Hash, TreeError> {
    Ok(tlog_tiles::tree_hash(size, r)?)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves, in RFC 9162 order
/// (from the leaf's sibling up).
pub fn inclusion(size: u64, index: u64, r: &impl HashReader) -> Result<Vec<Hash>, TreeError> {
    if index >= size {
        return Err(TreeError::OutOfRange { index, size });
    }
    Ok(tlog_tiles::prove_record(size, index, r)?)
}

/// The consistency proof from the tree of `from` leaves to the tree of `to` leaves.
pub fn consistency(from: u64, to: u64, r: &impl HashReader) -> Result<Vec<Hash>, TreeError> {
    if from == 0 || from > to {
        return Err(TreeError::BadRange { from, to });
    }
    Ok(tlog_tiles::prove_tree(to, from, r)?)
}

/// Checks that leaf `index` with hash `leaf` is in the tree of `size` leaves whose root
/// is `root`.
pub fn check_inclusion(proof: &[Hash], size: u64, root: Hash, index: u64, leaf: Hash) -> Result<(), TreeError> {
    if index >= size {
        return Err(TreeError::OutOfRange { index, size });
    }
    Ok(tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf)?)
}

/// Checks that the tree of `to` leaves with root `to_root` extends the tree of `from`
/// leaves with root `from_root`.
pub fn check_consistency(proof: &[Hash], from: u64, from_root: Hash, to: u64, to_root: Hash) -> Result<(), TreeError> {
    if from == 0 || from > to {
        return Err(TreeError::BadRange { from, to });
    }
    Ok(tlog_tiles::check_tree(&proof.to_vec(), to, to_root, from, from_root)?)
}

/// Base64 (standard, padded) of a hash, as in checkpoints and proofs.
pub fn b64(h: &Hash) -> String {
    h.to_string()
}

/// Parses a base64 hash.
pub fn parse_b64(s: &str) -> Result<Hash, TreeError> {
    Hash::parse_hash(s).map_err(|_| TreeError::BadHash)
}

/// The root of a whole list of leaf hashes, computed in memory (for verifiers that hold
/// every leaf, such as `gate audit verify`).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_HASH,
        1 => leaves[0],
        n => {
            // RFC 6962: split at the largest power of two below n.
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            tlog_tiles::node_hash(root_of(&leaves[..k]), root_of(&leaves[k..]))
        }
    }
}

/// Holds every stored hash of a tree built in memory (tests and offline verifiers).
#[derive(Default)]
pub struct Memory {
    hashes: Known,
    size: u64,
}

impl Memory {
    pub fn push(&mut self, leaf: Hash) -> Result<(), TreeError> {
        let start = stored_hash_index(0, self.size);
        for (i, h) in appended(self.size, leaf, &self.hashes)?.into_iter().enumerate() {
            self.hashes.insert(start + i as u64, h);
        }
        self.size += 1;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn reader(&self) -> &Known {
        &self.hashes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("event {i}").as_bytes())).collect()
    }

    #[test]
    fn stored_and_in_memory_roots_agree_and_proofs_check() {
        let ls = leaves(37);
        let mut m = Memory::default();
        for (i, l) in ls.iter().enumerate() {
            m.push(*l).unwrap();
            let size = i as u64 + 1;
            let r = root(size, m.reader()).unwrap();
            assert_eq!(r, root_of(&ls[..=i]), "size {size}");
        }
        for size in 1..=37u64 {
            let r = root(size, m.reader()).unwrap();
            for index in 0..size {
                let p = inclusion(size, index, m.reader()).unwrap();
                check_inclusion(&p, size, r, index, ls[index as usize]).unwrap();
                assert!(check_inclusion(&p, size, r, index, leaf_hash(b"forged")).is_err());
            }
            for from in 1..=size {
                let p = consistency(from, size, m.reader()).unwrap();
                let fr = root(from, m.reader()).unwrap();
                check_consistency(&p, from, fr, size, r).unwrap();
                if from < size {
                    let other = root_of(&leaves(from + 1)[1..]);
                    assert!(check_consistency(&p, from, other, size, r).is_err());
                }
            }
        }
    }

    #[test]
    fn a_failed_read_names_what_to_fetch() {
        let mut m = Memory::default();
        for l in leaves(11) {
            m.push(l).unwrap();
        }
        let mut known = Known::default();
        assert!(root(11, &known).is_err());
        for i in known.take_missing() {
            known.insert(i, m.reader().hashes[&i]);
        }
        assert_eq!(root(11, &known).unwrap(), root(11, m.reader()).unwrap());
        assert!(known.take_missing().is_empty());
    }

    #[test]
    fn hostile_proofs_are_errors_not_panics() {
        let r = leaf_hash(b"x");
        assert!(check_inclusion(&[r; 70], 5, r, 2, r).is_err());
        assert!(check_inclusion(&[], 5, r, 9, r).is_err());
        assert!(check_consistency(&[r; 70], 3, r, 9, r).is_err());
        assert!(check_consistency(&[], 0, r, 9, r).is_err());
        assert!(check_consistency(&[], 9, r, 3, r).is_err());
    }
}
