//! The cell key method (ABS TableBuilder; the EU and UK 2021 censuses).
//!
//! Input: per cell its count and the sum of its records' keys modulo 2^32 (built by
//! `disaggregate` from [`record_key`]), and a perturbation table. Output: the published count.
//!
//! Every record's key is a keyed hash (BLAKE3, keyed by a key derived from the protection
//! secret, never from the spec) of its stable identifier, a number in [0, 1) held as a 32-bit fraction; a cell's key is the sum of its
//! records' keys mod 1. The perturbation table says, for an original count `i` and a cell key,
//! which count `j` is published: the rows of `i`, in order of `j`, split [0, 1) into intervals
//! of length `p`. Counts above the table's largest `i` take that row's noise `j − i`. The same
//! records give the same cell key, hence the same published count, in every table and every
//! release run with the same secret — averaging over tables or releases learns nothing.
//! migstat perturbs the finest cells of a group of linked tables this way and publishes every
//! margin as the sum of the perturbed cells below it (`perturb`).
//!
//! The built-in table ([`PTable::default`]) is unbiased (each row's mean is `i`), never
//! publishes 1 or 2, and moves a count by at most 2 (a 3 may become 0):
//!
//! | i    | published j (probability)                                   | variance |
//! |------|-------------------------------------------------------------|----------|
//! | 0    | 0 (1)                                                       | 0        |
//! | 1    | 0 (2/3), 3 (1/3)                                            | 2        |
//! | 2    | 0 (1/3), 3 (2/3)                                            | 2        |
//! | 3    | 0 (0.05), 3 (0.825), 4 (0.1), 5 (0.025)                     | 0.65     |
//! | 4    | 3 (0.2), 4 (0.6), 5 (0.2)                                   | 0.4      |
//! | ≥ 5  | i−2 (0.05), i−1 (0.2), i (0.5), i+1 (0.2), i+2 (0.05)       | 0.6      |
//!
//! A table from R's `ptable` package (`create_cnt_ptable(D, V, js = 2)`, written with its `i`,
//! `j` and `p` columns) can replace it: `protect = { method = "cell_key", ptable = "file.csv" }`.

pub use crate::disaggregate::record_key;
pub use crate::spec::PTable;

/// A cell's key in [0, 1) from the sum of its records' keys modulo 2^32.
pub fn cell_key(sum: u32) -> f64 {
    f64::from(sum) / 4_294_967_296.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_keys_add_like_their_records() {
        let ids = ["a1", "b2", "c3", "d4"];
        let k7 = [7u8; 32];
        let keys: Vec<u32> = ids.iter().map(|i| record_key(&k7, i)).collect();
        let sum = keys.iter().fold(0u32, |s, k| s.wrapping_add(*k));
        // Mod-1 sum of the fractions equals the fraction of the mod-2^32 sum.
        let frac: f64 = keys.iter().map(|k| cell_key(*k)).sum::<f64>().fract();
        assert!((cell_key(sum) - frac).abs() < 1e-9);
        assert_eq!(record_key(&k7, "a1"), keys[0]);
        assert_ne!(record_key(&[8u8; 32], "a1"), keys[0]);
    }

    proptest::proptest! {
        /// The same records give the same published count whatever table they are counted in
        /// and in whatever order they arrive: the cell key is a sum mod 2^32.
        #[test]
        fn the_same_records_get_the_same_noise_in_any_table_and_order(
            ids in proptest::collection::btree_set("[a-z0-9]{1,12}", 1..40),
            other in proptest::collection::btree_set("[A-Z]{1,8}", 0..40),
            seed in 0u8..255,
        ) {
            let seed = [seed; 32];
            let t = PTable::default();
            let key = |ids: &mut dyn Iterator<Item = &String>| {
                ids.fold(0u32, |s, id| s.wrapping_add(record_key(&seed, id)))
            };
            // Table A counts the records in one cell; table B in reverse order, as part of a
            // margin whose other records (`other`) fall in a different cell.
            let a = key(&mut ids.iter());
            let b = key(&mut ids.iter().rev());
            proptest::prop_assert_eq!(a, b);
            let n = ids.len() as u64;
            proptest::prop_assert_eq!(t.perturb(n, cell_key(a)), t.perturb(n, cell_key(b)));
            // The margin's key is the sum of its cells' keys.
            let margin = key(&mut ids.iter().chain(other.iter()));
            proptest::prop_assert_eq!(margin, a.wrapping_add(key(&mut other.iter())));
            let p = t.perturb(n, cell_key(a));
            proptest::prop_assert!(p != 1 && p != 2);
        }
    }
}
