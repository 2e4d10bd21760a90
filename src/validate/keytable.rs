//! The in-memory window of a key set: an open-addressing table of 16-byte slots (a key's 96
//! bits and the position where it was first seen), sorted in place when it spills.
//!
//! Input: keys (96-bit hashes, see `validate::Key`) with their source positions, in the order
//! their rows must win. Output: for each key, the position it was first seen at, and on demand
//! the table's keys sorted by key as run records, without a second copy of them.
//!
//! Why not `std`'s `HashMap`: a spill drained the map into a sorted vector (a second copy of
//! the window: 58 MiB beside the 70 MiB table for 3.6 M keys), and that spike, meeting the
//! pass's other buffers, set the peak memory of a long source. Here the slots themselves are
//! compacted and sorted, so a window costs its table and nothing more. Linear probing on the
//! hash's low bits, at most 3/4 full; a slot whose position is `u32::MAX` is empty (positions
//! are below it: a source of more rows is refused).

/// One slot: the key's three 32-bit words, then the position (`EMPTY` when unused). Sorting
/// slots as arrays sorts by key, then position, as the run records' bytes do.
pub(super) type Slot = [u32; 4];

const EMPTY: u32 = u32::MAX;

/// Keys held at most per slot: 3 in 4.
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;

#[derive(Default)]
pub(super) struct KeyTable {
    slots: Vec<Slot>,
    len: usize,
}

impl KeyTable {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot mask: a key whose hash is `h` goes to slot `h & mask` or after it.
    pub(super) fn mask(&self) -> u64 {
        (self.slots.len() as u64).saturating_sub(1)
    }

    /// Slots needed to hold `keys` keys.
    fn slots_for(keys: usize) -> usize {
        keys.saturating_mul(LOAD_DEN)
            .div_ceil(LOAD_NUM)
            .next_power_of_two()
            .max(16)
    }

    /// Make room for `more` keys beyond those held, without growing later.
    pub(super) fn reserve(&mut self, more: usize) {
        let need = Self::slots_for(self.len + more);
        if need <= self.slots.len() {
            return;
        }
        let old = std::mem::replace(&mut self.slots, vec![[0, 0, 0, EMPTY]; need]);
        self.len = 0;
        for s in old.into_iter().filter(|s| s[3] != EMPTY) {
            self.first_seen([s[0], s[1], s[2]], s[3]);
        }
    }

    /// The position `key` was first seen at, or `None` after recording `pos` as its first.
    pub(super) fn first_seen(&mut self, key: [u32; 3], pos: u32) -> Option<u32> {
        debug_assert!(pos != EMPTY, "position u32::MAX marks an empty slot");
        if Self::slots_for(self.len + 1) > self.slots.len() {
            self.reserve(1);
        }
        let mask = self.mask() as usize;
        let mut i = (u64::from(key[0]) | (u64::from(key[1]) << 32)) as usize & mask;
        loop {
            let s = &mut self.slots[i];
            if s[3] == EMPTY {
                *s = [key[0], key[1], key[2], pos];
                self.len += 1;
                return None;
            }
            if s[..3] == key {
                return Some(s[3]);
            }
            i = (i + 1) & mask;
        }
    }

    /// Every key held with its position, sorted by key, then position, sorted where they are
    /// (the table keeps its memory). The table is empty again once `use_them` returns.
    pub(super) fn drain_sorted<T>(&mut self, use_them: impl FnOnce(&[Slot]) -> T) -> T {
        // Compact the used slots to the front, then sort that prefix in place.
        let (mut n, mut i) = (0, 0);
        while i < self.slots.len() {
            if self.slots[i][3] != EMPTY {
                self.slots.swap(n, i);
                n += 1;
            }
            i += 1;
        }
        let used = &mut self.slots[..n];
        {
            use rayon::slice::ParallelSliceMut as _;
            used.par_sort_unstable();
        }
        let out = use_them(used);
        self.slots.fill([0, 0, 0, EMPTY]);
        self.len = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_position_of_each_key_wins_and_spills_sorted() {
        let mut t = KeyTable::default();
        // Keys chosen to collide on the low bits: every one starts at slot 0 or 1.
        let keys: Vec<[u32; 3]> = (0..40u32).map(|i| [i % 2, i, 1000 - i]).collect();
        for (p, k) in keys.iter().enumerate() {
            assert_eq!(t.first_seen(*k, p as u32), None);
        }
        assert_eq!(t.len(), 40);
        // Repeats name the first position, whatever position they come with.
        assert_eq!(t.first_seen(keys[7], 99), Some(7));
        assert_eq!(t.first_seen(keys[0], 100), Some(0));
        assert_eq!(t.len(), 40);
        // 40 keys at most 3/4 full: 64 slots.
        assert_eq!(t.mask(), 63);
        // The default window (3 × 2^20 keys) fills 2^22 slots exactly 3/4.
        assert_eq!(KeyTable::slots_for(3 << 20), 1 << 22);
        assert_eq!(KeyTable::slots_for((3 << 20) + 1), 1 << 23);
        let sorted = t.drain_sorted(|s| s.to_vec());
        let mut expected: Vec<Slot> = keys
            .iter()
            .enumerate()
            .map(|(p, k)| [k[0], k[1], k[2], p as u32])
            .collect();
        expected.sort();
        assert_eq!(sorted, expected);
        assert!(t.is_empty());
        // Emptied, not shrunk; the keys are forgotten.
        assert_eq!(t.mask(), 63);
        assert_eq!(t.first_seen(keys[7], 5), None);
    }

    #[test]
    fn growing_keeps_every_key_and_its_position() {
        let mut t = KeyTable::default();
        t.reserve(10);
        assert_eq!(t.mask(), 15);
        for i in 0..1000u32 {
            assert_eq!(t.first_seen([i.wrapping_mul(2_654_435_761), i, 7], i), None);
        }
        assert!(t.mask() >= 1000 * 4 / 3);
        for i in 0..1000u32 {
            assert_eq!(
                t.first_seen([i.wrapping_mul(2_654_435_761), i, 7], 5000),
                Some(i)
            );
        }
        let n = t.drain_sorted(|s| s.len());
        assert_eq!(n, 1000);
    }
}
