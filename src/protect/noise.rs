//! Noise for count tables: conventional and random rounding, and the keyed uniform numbers
//! behind them.

/// Round `n` to a multiple of `base`: to the nearest (halves up), or at random, up with
/// probability (n mod base)/base from `u` in [0, 1).
pub fn round(n: u64, base: u64, u: Option<f64>) -> u64 {
    let r = n % base;
    if r == 0 {
        return n;
    }
    let up = match u {
        None => 2 * r >= base,
        Some(u) => u < r as f64 / base as f64,
    };
    if up { n - r + base } else { n - r }
}

/// A uniform number in [0, 1) from a keyed hash of the cell: the same seed, table and cell give
/// the same number in every run.
pub(super) fn uniform(seed: u64, table: &str, cell: &[String]) -> f64 {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(table.as_bytes());
    for c in cell {
        h.update(&[0]);
        h.update(c.as_bytes());
    }
    let b = h.finalize();
    let mut x = [0u8; 8];
    x.copy_from_slice(&b.as_bytes()[..8]);
    (u64::from_le_bytes(x) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(round(7, 5, None), 5);
        assert_eq!(round(8, 5, None), 10);
        assert_eq!(round(10, 5, None), 10);
        assert_eq!(round(0, 3, Some(0.0)), 0);
        // 7 = 5 + 2: up with probability 2/5.
        assert_eq!(round(7, 5, Some(0.39)), 10);
        assert_eq!(round(7, 5, Some(0.41)), 5);
        let u = uniform(1, "t", &["F".into(), "A".into()]);
        assert_eq!(u, uniform(1, "t", &["F".into(), "A".into()]));
        assert_ne!(u, uniform(2, "t", &["F".into(), "A".into()]));
        assert!((0.0..1.0).contains(&u));
    }
}
