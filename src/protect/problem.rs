//! A protection problem: the finest cells of a group of linked tables, and every cell those
//! tables publish as the sum of the finest cells below it.
//!
//! Input: the finest cells of the group's union cube (every dimension of every member table,
//! codes → count), the declared hierarchies, and the margin combinations the members publish.
//! Output: a [`Problem`] — rows (the finest cells of the *frame*: every combination of the
//! codes observed in each dimension, within the hierarchies, zeros included), cells (codes with
//! `_T`, value, the rows below them), and what the intruder knows without any table: that every
//! code of the frame occurs (its one-way sum is at least 1).
//!
//! Tables of the same records share their finest cells, so a cell of one table is a sum of the
//! same rows as the cell with the same codes in another: the intruder can combine them, and the
//! problem holds them all. Two member cells with the same codes are one cell here.

use std::collections::{BTreeMap, BTreeSet};

// FxHash: the cube's keys are short integer vectors, hashed millions of times; nothing here is
// iterated in hash order.
use rustc_hash::FxHashMap as HashMap;

use crate::error::{Error, Result};

/// Code id of a dimension's margin (`_T`) in a cell.
pub const TOTAL_ID: u32 = u32::MAX;

/// Rows a frame may have before the problem is refused (a product of observed codes this large
/// is a mistake in the table's dimensions, not a table).
pub const MAX_FRAME: usize = 5_000_000;

#[derive(Debug, Clone)]
pub struct Problem {
    /// The union cube's dimensions.
    pub dims: Vec<String>,
    /// Per dimension, its codes (a code id indexes this list), sorted.
    pub codes: Vec<Vec<String>>,
    /// The frame's finest cells: one code id per dimension.
    pub rows: Vec<Vec<u32>>,
    pub row_values: Vec<u64>,
    /// The published cells: code ids with [`TOTAL_ID`] for `_T`.
    pub cells: Vec<Vec<u32>>,
    pub values: Vec<u64>,
    /// Per cell, the rows below it (ascending).
    pub support: Vec<Vec<u32>>,
    /// Per row, the published cells it lies below (ascending).
    pub containing: Vec<Vec<u32>>,
    /// Sums of rows the intruder knows to be at least some number: each code that occurs.
    pub at_least: Vec<(Vec<u32>, u64)>,
    /// One-way margins the intruder does *not* know to be at least 1 (see
    /// [`Problem::without_floor`]).
    pub floorless: Vec<bool>,
    /// Whether a member table publishes the cell; the others (every other margin combination
    /// of the union cube) are hidden: never published, but part of the relations.
    pub visible: Vec<bool>,
    /// The cube's relations `parent = Σ children` along each dimension.
    pub relations: Vec<(u32, Vec<u32>)>,
    /// Per cell, the relations it takes part in.
    pub member_of: Vec<Vec<u32>>,
    index: HashMap<Vec<u32>, usize>,
}

impl Problem {
    /// The problem of a union cube over `dims` with finest cells `finest` (codes → count, no
    /// `_T`), `hierarchies` as (child, parent) dimension indices, `frame_extra` finest code
    /// tuples that belong to the frame even when empty now (an earlier publication's), and the
    /// published margin combinations `masks` (bit j set: dimension j is `_T`).
    pub fn new(
        dims: Vec<String>,
        finest: &BTreeMap<Vec<String>, u64>,
        hierarchies: &[(usize, usize)],
        frame_extra: &[&[String]],
        masks: &[u32],
    ) -> Result<Self> {
        let cells: Vec<(&[String], u64)> = finest.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
        Self::of_cells(dims, &cells, hierarchies, frame_extra, masks)
    }

    /// [`Problem::new`] of finest cells given by reference (each key once).
    pub fn of_cells(
        dims: Vec<String>,
        finest: &[(&[String], u64)],
        hierarchies: &[(usize, usize)],
        frame_extra: &[&[String]],
        masks: &[u32],
    ) -> Result<Self> {
        let d = dims.len();
        let mut code_sets: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); d];
        // child dimension → child code → parent code
        let mut nest: Vec<BTreeMap<&str, &str>> = vec![BTreeMap::new(); d];
        for key in finest
            .iter()
            .map(|(k, _)| *k)
            .chain(frame_extra.iter().copied())
        {
            if key.len() != d {
                return Err(Error::Internal(format!(
                    "protection problem: a cell has {} codes for {d} dimensions",
                    key.len()
                )));
            }
            for (j, c) in key.iter().enumerate() {
                code_sets[j].insert(c.as_str());
            }
            for &(child, parent) in hierarchies {
                nest[child].insert(key[child].as_str(), key[parent].as_str());
            }
        }
        let codes = sorted_codes(&code_sets);
        let id_of = id_maps(&codes);
        // The frame: the product of the codes of the dimensions that are no hierarchy's child,
        // each child code under its own parent only.
        let is_child: Vec<Option<usize>> = (0..d)
            .map(|j| hierarchies.iter().find(|h| h.0 == j).map(|h| h.1))
            .collect();
        let mut rows: Vec<Vec<u32>> = Vec::new();
        let mut cur = vec![0u32; d];
        if codes.iter().any(Vec::is_empty) {
            // No record: an empty frame (the grand total alone, zero).
        } else {
            let mut produced = 0usize;
            'outer: loop {
                produced += 1;
                if produced > MAX_FRAME.saturating_mul(8) {
                    return Err(Error::Usage(format!(
                        "the cube of dimensions {} has more than {} combinations of codes to enumerate; drop a dimension or declare its hierarchy",
                        dims.join(", "),
                        MAX_FRAME
                    )));
                }
                let ok = (0..d).all(|j| match is_child[j] {
                    None => true,
                    Some(p) => {
                        let child = codes[j][cur[j] as usize].as_str();
                        nest[j].get(child).copied() == Some(codes[p][cur[p] as usize].as_str())
                    }
                });
                if ok {
                    rows.push(cur.clone());
                    if rows.len() > MAX_FRAME {
                        return Err(Error::Usage(format!(
                            "the cube of dimensions {} has more than {MAX_FRAME} cells in its frame; drop a dimension or declare its hierarchy",
                            dims.join(", ")
                        )));
                    }
                }
                let mut j = d;
                loop {
                    if j == 0 {
                        break 'outer;
                    }
                    j -= 1;
                    cur[j] += 1;
                    if (cur[j] as usize) < codes[j].len() {
                        break;
                    }
                    cur[j] = 0;
                }
            }
        }
        let mut row_values = vec![0u64; rows.len()];
        {
            let row_index: HashMap<&[u32], usize> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| (r.as_slice(), i))
                .collect();
            for &(key, v) in finest {
                let ids: Vec<u32> = key
                    .iter()
                    .enumerate()
                    .map(|(j, c)| id_of[j][c.as_str()])
                    .collect();
                match row_index.get(ids.as_slice()) {
                    Some(&r) => row_values[r] += v,
                    None => {
                        return Err(Error::Internal(format!(
                            "protection problem: cell {} is outside its own frame",
                            key.join("|")
                        )));
                    }
                }
            }
        }
        Ok(Problem::from_frame(dims, codes, rows, row_values, masks))
    }

    /// The problem of an explicit frame: `rows` (code ids into `codes`) with their counts, and
    /// the published margin combinations.
    pub fn from_frame(
        dims: Vec<String>,
        codes: Vec<Vec<String>>,
        rows: Vec<Vec<u32>>,
        row_values: Vec<u64>,
        masks: &[u32],
    ) -> Self {
        let d = dims.len();
        let mut published_masks: Vec<u32> = masks.to_vec();
        published_masks.sort_unstable();
        published_masks.dedup();
        // Every margin combination's projection of every row (hidden where no member
        // publishes it), sorted by key. Keys are packed into one integer where they fit (every
        // frame `new` enumerates does: under 60 bits): a packed key hashes without the heap.
        let entries = match KeyPacker::new(&codes, &rows) {
            Some(p) => project(&rows, &row_values, d, |k| p.pack(k)),
            None => project(&rows, &row_values, d, <[u32]>::to_vec),
        };
        let mut cells = Vec::with_capacity(entries.len());
        let mut values = Vec::with_capacity(entries.len());
        let mut support = Vec::with_capacity(entries.len());
        for (k, v, s) in entries {
            cells.push(k);
            values.push(v);
            support.push(s);
        }
        let visible: Vec<bool> = cells
            .iter()
            .map(|k| {
                let m = k
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c == TOTAL_ID)
                    .fold(0u32, |m, (j, _)| m | (1 << j));
                published_masks.binary_search(&m).is_ok()
            })
            .collect();
        let mut containing = vec![Vec::new(); rows.len()];
        for (c, s) in support.iter().enumerate() {
            if visible[c] {
                for r in s {
                    containing[*r as usize].push(c as u32);
                }
            }
        }
        // Relations: cells that agree but in dimension j, with `_T` there as the parent.
        let cell_index: HashMap<&[u32], usize> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_slice(), i))
            .collect();
        // Keyed by (dimension, parent), in that order (a sort after hashing, as for the cells).
        let mut rel_slot: HashMap<(usize, u32), usize> = HashMap::default();
        let mut rel_list: Vec<((usize, u32), Vec<u32>)> = Vec::new();
        let mut parent = vec![TOTAL_ID; d];
        for (i, c) in cells.iter().enumerate() {
            for j in 0..d {
                if c[j] != TOTAL_ID {
                    parent.copy_from_slice(c);
                    parent[j] = TOTAL_ID;
                    // A parent that is no cell has no relation (cannot happen with every mask).
                    let Some(&pi) = cell_index.get(parent.as_slice()) else {
                        continue;
                    };
                    let k = (j, pi as u32);
                    let at = *rel_slot.entry(k).or_insert_with(|| {
                        rel_list.push((k, Vec::new()));
                        rel_list.len() - 1
                    });
                    rel_list[at].1.push(i as u32);
                }
            }
        }
        // Cells are sorted by key, so a parent's index orders parents as their keys did.
        rel_list.sort_unstable_by_key(|(k, _)| *k);
        let relations: Vec<(u32, Vec<u32>)> = rel_list
            .into_iter()
            .map(|((_, pi), children)| (pi, children))
            .collect();
        let mut member_of = vec![Vec::new(); cells.len()];
        for (r, (parent, children)) in relations.iter().enumerate() {
            member_of[*parent as usize].push(r as u32);
            for ch in children {
                member_of[*ch as usize].push(r as u32);
            }
        }
        let at_least = at_least(&rows, &row_values, d, |_, _| false);
        let floorless = vec![false; cells.len()];
        let index = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        Problem {
            dims,
            codes,
            rows,
            row_values,
            cells,
            values,
            support,
            containing,
            at_least,
            floorless,
            visible,
            relations,
            member_of,
            index,
        }
    }

    /// The problem of a frame given by names: finest code tuples with their counts.
    pub fn from_named_rows(
        dims: Vec<String>,
        rows: &BTreeMap<Vec<String>, u64>,
        masks: &[u32],
    ) -> Self {
        let d = dims.len();
        let mut sets: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); d];
        for k in rows.keys() {
            for (j, c) in k.iter().enumerate().take(d) {
                sets[j].insert(c);
            }
        }
        let codes = sorted_codes(&sets);
        let ids = id_maps(&codes);
        let (r, v): (Vec<Vec<u32>>, Vec<u64>) = rows
            .iter()
            .map(|(k, v)| {
                (
                    k.iter()
                        .enumerate()
                        .take(d)
                        .map(|(j, c)| ids[j][c.as_str()])
                        .collect(),
                    *v,
                )
            })
            .unzip();
        Problem::from_frame(dims, codes, r, v, masks)
    }

    /// The cell with these codes (names, `_T` for a margin), published or hidden.
    pub fn find(&self, key: &[String]) -> Option<usize> {
        let ids: Option<Vec<u32>> = key
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if c == crate::vocab::TOTAL {
                    Some(TOTAL_ID)
                } else {
                    self.codes[j].binary_search(c).ok().map(|i| i as u32)
                }
            })
            .collect();
        self.index.get(&ids?).copied()
    }

    /// The cell with these code ids, if any.
    pub fn index_of(&self, key: &[u32]) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The cell's codes as names (`_T` for a margin).
    pub fn names(&self, cell: usize) -> Vec<String> {
        self.cells[cell]
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if *c == TOTAL_ID {
                    crate::vocab::TOTAL.to_string()
                } else {
                    self.codes[j][*c as usize].clone()
                }
            })
            .collect()
    }

    /// The frame of a series is published for every period, so a code of the frame need not
    /// occur in each period: the intruder knows only that it occurs in *some* period. A code
    /// that occurs in several periods of the series (`shared`, per dimension) then gives no
    /// bound in any one of them; a code occurring in this period alone keeps its floor (the
    /// other periods may show it as 0, which places it here).
    pub fn without_floor(mut self, shared: &[BTreeSet<String>]) -> Self {
        let d = self.dims.len();
        let skip = |j: usize, code: u32| {
            shared.get(j).is_some_and(|s| {
                self.codes[j]
                    .get(code as usize)
                    .is_some_and(|c| s.contains(c))
            })
        };
        let at = at_least(&self.rows, &self.row_values, d, skip);
        let floorless: Vec<bool> = self
            .cells
            .iter()
            .map(|c| {
                let open: Vec<usize> = (0..d).filter(|j| c[*j] != TOTAL_ID).collect();
                open.len() == 1 && skip(open[0], c[open[0]])
            })
            .collect();
        self.at_least = at;
        self.floorless = floorless;
        self
    }

    /// The least value the intruder allows the cell when it is suppressed: 1 for a non-empty
    /// one-way margin with a floor (its code occurs), else 0.
    pub fn floor(&self, cell: usize) -> u64 {
        u64::from(
            self.values[cell] > 0
                && self.margins(cell) + 1 == self.dims.len()
                && !self.floorless[cell],
        )
    }

    /// How many dimensions of the cell are `_T`.
    pub fn margins(&self, cell: usize) -> usize {
        self.cells[cell].iter().filter(|c| **c == TOTAL_ID).count()
    }

    pub fn is_grand_total(&self, cell: usize) -> bool {
        self.margins(cell) == self.dims.len()
    }
}

/// Every code that occurs (and `skip` does not exempt): its rows sum to at least 1.
fn at_least(
    rows: &[Vec<u32>],
    row_values: &[u64],
    d: usize,
    skip: impl Fn(usize, u32) -> bool,
) -> Vec<(Vec<u32>, u64)> {
    let mut out = Vec::new();
    for j in 0..d {
        let mut by_code: BTreeMap<u32, (u64, Vec<u32>)> = BTreeMap::new();
        for (r, row) in rows.iter().enumerate() {
            let e = by_code.entry(row[j]).or_default();
            e.0 += row_values[r];
            e.1.push(r as u32);
        }
        for (code, (v, rs)) in by_code {
            if v > 0 && !skip(j, code) {
                out.push((rs, 1));
            }
        }
    }
    out
}

/// Each dimension's codes, sorted (a code's id is its position).
fn sorted_codes(sets: &[BTreeSet<&str>]) -> Vec<Vec<String>> {
    sets.iter()
        .map(|s| s.iter().map(|c| c.to_string()).collect())
        .collect()
}

/// Each dimension's code → id map.
fn id_maps(codes: &[Vec<String>]) -> Vec<HashMap<&str, u32>> {
    codes
        .iter()
        .map(|cs| {
            cs.iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i as u32))
                .collect()
        })
        .collect()
}

/// Per dimension, the codes that occur (in a cell counting more than 0) in more than one period
/// of a series, from each period's finest cells as (key, count): such a code loses the floor
/// of 1 in every period ([`Problem::without_floor`]), since knowing it occurred in *some*
/// period no longer tells which.
pub fn codes_in_several_periods<'a, P, C>(periods: P, d: usize) -> Vec<BTreeSet<String>>
where
    P: IntoIterator<Item = C>,
    C: IntoIterator<Item = (&'a [String], u64)>,
{
    let mut occurs: Vec<BTreeMap<&'a str, usize>> = vec![BTreeMap::new(); d];
    for cells in periods {
        let mut here: Vec<BTreeSet<&'a str>> = vec![BTreeSet::new(); d];
        for (key, n) in cells {
            if n > 0 {
                for (j, code) in key.iter().enumerate().take(d) {
                    here[j].insert(code.as_str());
                }
            }
        }
        for (j, codes) in here.into_iter().enumerate() {
            for c in codes {
                *occurs[j].entry(c).or_default() += 1;
            }
        }
    }
    occurs
        .into_iter()
        .map(|m| {
            m.into_iter()
                .filter(|(_, n)| *n > 1)
                .map(|(c, _)| c.to_string())
                .collect()
        })
        .collect()
}

/// Cell keys packed into a `u128`, dimension 0 in the highest bits, each dimension in as many
/// bits as its largest code id needs plus one value: `_T` is its field's all-ones value, above
/// every code id, so packed keys order as the keys do.
struct KeyPacker {
    widths: Vec<u32>,
}

impl KeyPacker {
    /// `None` when the fields do not fit in 128 bits.
    fn new(codes: &[Vec<String>], rows: &[Vec<u32>]) -> Option<Self> {
        let mut n: Vec<u64> = codes.iter().map(|c| c.len() as u64).collect();
        for row in rows {
            for (j, c) in row.iter().enumerate() {
                if *c != TOTAL_ID && j < n.len() {
                    n[j] = n[j].max(u64::from(*c) + 1);
                }
            }
        }
        // 2^w > n: the all-ones value 2^w - 1 is at least n, above every id (< n).
        let widths: Vec<u32> = n.iter().map(|n| (64 - n.leading_zeros()).max(1)).collect();
        (widths.iter().sum::<u32>() <= 128).then_some(KeyPacker { widths })
    }

    fn pack(&self, key: &[u32]) -> u128 {
        key.iter().zip(&self.widths).fold(0u128, |acc, (c, w)| {
            let all_ones = (1u128 << w) - 1;
            let field = if *c == TOTAL_ID {
                all_ones
            } else {
                u128::from(*c)
            };
            (acc << w) | field
        })
    }
}

/// Every margin combination (mask) of every row: per cell its key, value and the rows below
/// it (ascending), sorted by key. `pack` maps a key to a hashable stand-in that orders as the
/// key does.
fn project<K: std::hash::Hash + Eq + Ord>(
    rows: &[Vec<u32>],
    row_values: &[u64],
    d: usize,
    pack: impl Fn(&[u32]) -> K,
) -> Vec<(Vec<u32>, u64, Vec<u32>)> {
    use std::collections::hash_map::Entry;
    let mut slot: HashMap<K, usize> = HashMap::default();
    let mut entries: Vec<(K, Vec<u32>, u64, Vec<u32>)> = Vec::new();
    let mut key: Vec<u32> = vec![TOTAL_ID; d];
    for mask in 0..(1u32 << d) {
        if rows.is_empty() && mask == (1u32 << d) - 1 {
            // No row: the grand total alone, zero.
            entries.push((pack(&key), key.clone(), 0, Vec::new()));
        }
        for (r, row) in rows.iter().enumerate() {
            for j in 0..d {
                key[j] = if mask & (1 << j) != 0 {
                    TOTAL_ID
                } else {
                    row[j]
                };
            }
            let i = match slot.entry(pack(&key)) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    e.insert(entries.len());
                    entries.push((pack(&key), key.clone(), 0, Vec::new()));
                    entries.len() - 1
                }
            };
            entries[i].2 += row_values[r];
            entries[i].3.push(r as u32);
        }
    }
    drop(slot);
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().map(|(_, k, v, s)| (k, v, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Packed keys order as the keys do (`_T` above every code), and the projection with
        /// them is the one with the keys themselves.
        #[test]
        fn packed_keys_order_and_project_as_the_keys(
            lens in proptest::collection::vec(1usize..40, 1..5),
            picks in proptest::collection::vec(proptest::collection::vec(0u32..40, 4), 0..30),
            totals in proptest::collection::vec(0u32..16, 30),
        ) {
            let d = lens.len();
            let codes: Vec<Vec<String>> =
                lens.iter().map(|n| (0..*n).map(|i| i.to_string()).collect()).collect();
            let rows: Vec<Vec<u32>> = picks
                .iter()
                .map(|p| (0..d).map(|j| p[j] % lens[j] as u32).collect())
                .collect();
            let values: Vec<u64> = (0..rows.len() as u64).map(|v| v * 7 % 11).collect();
            let packer = KeyPacker::new(&codes, &rows).expect("fits");
            // Keys with margins: each row with some dimensions at `_T`.
            let keys: Vec<Vec<u32>> = rows
                .iter()
                .zip(&totals)
                .map(|(r, t)| {
                    r.iter()
                        .enumerate()
                        .map(|(j, c)| if t & (1 << j) != 0 { TOTAL_ID } else { *c })
                        .collect()
                })
                .collect();
            for a in &keys {
                for b in &keys {
                    proptest::prop_assert_eq!(packer.pack(a).cmp(&packer.pack(b)), a.cmp(b));
                }
            }
            let packed = project(&rows, &values, d, |k| packer.pack(k));
            let plain = project(&rows, &values, d, <[u32]>::to_vec);
            proptest::prop_assert_eq!(packed, plain);
        }
    }

    #[test]
    fn keys_too_wide_to_pack_are_projected_unpacked() {
        // Five dimensions of 2^30 codes need more than 128 bits.
        let codes: Vec<Vec<String>> = vec![Vec::new(); 5];
        let rows = vec![vec![1 << 30; 5], vec![0; 5]];
        assert!(KeyPacker::new(&codes, &rows).is_none());
        let p = Problem::from_frame(
            (0..5).map(|j| format!("D{j}")).collect(),
            codes,
            rows,
            vec![2, 3],
            &[0, 31],
        );
        // The grand total (every dimension `_T`) sorts last and sums both rows.
        assert_eq!(p.cells.last(), Some(&vec![TOTAL_ID; 5]));
        assert_eq!(p.values.last(), Some(&5));
        assert_eq!(p.cells.len(), 2 * 32 - 1);
    }

    #[test]
    fn a_code_seen_in_two_periods_is_shared() {
        let k = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        let (p1, p2) = (
            vec![
                (k("M", "SEN"), 2u64),
                (k("F", "MLI"), 1),
                (k("F", "GIN"), 0),
            ],
            vec![(k("M", "SEN"), 1u64), (k("M", "GIN"), 3)],
        );
        let periods = [&p1, &p2].map(|p| {
            p.iter()
                .map(|(key, n)| (key.as_slice(), *n))
                .collect::<Vec<_>>()
        });
        let shared = codes_in_several_periods(periods, 2);
        // M in both; F only in the first. SEN in both; GIN counted only where its count is > 0.
        assert_eq!(shared[0], BTreeSet::from(["M".to_string()]));
        assert_eq!(shared[1], BTreeSet::from(["SEN".to_string()]));
    }

    fn finest(rows: &[(&[&str], u64)]) -> BTreeMap<Vec<String>, u64> {
        rows.iter()
            .map(|(k, v)| (k.iter().map(|s| s.to_string()).collect(), *v))
            .collect()
    }

    #[test]
    fn the_frame_is_every_combination_within_the_hierarchy() {
        // Region r1 holds countries a, b; region r2 holds c. Two sexes.
        let f = finest(&[
            (&["F", "r1", "a"], 3),
            (&["M", "r1", "b"], 1),
            (&["F", "r2", "c"], 2),
        ]);
        let all: Vec<u32> = (0..8).collect();
        let p = Problem::new(
            vec!["SEX".into(), "REGION".into(), "COUNTRY".into()],
            &f,
            &[(2, 1)],
            &[],
            &all,
        )
        .unwrap();
        // 2 sexes × 3 countries (each in its own region): 6 finest cells, 3 of them empty.
        assert_eq!(p.rows.len(), 6);
        assert_eq!(p.row_values.iter().filter(|v| **v == 0).count(), 3);
        let t = |k: &[&str]| {
            let k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            p.values[p.find(&k).unwrap()]
        };
        assert_eq!(t(&["_T", "_T", "_T"]), 6);
        assert_eq!(t(&["_T", "r1", "_T"]), 4);
        assert_eq!(t(&["M", "_T", "a"]), 0);
        // (_T, r1, a) and (_T, _T, a) are the same rows.
        let a1 = p.find(&["_T".into(), "r1".into(), "a".into()]).unwrap();
        let a2 = p.find(&["_T".into(), "_T".into(), "a".into()]).unwrap();
        assert_eq!(p.support[a1], p.support[a2]);
        // No cell pairs a country with another region's code.
        assert!(p.find(&["_T".into(), "r2".into(), "a".into()]).is_none());
        // Each code that occurs is at least 1: 2 sexes + 2 regions + 3 countries.
        assert_eq!(p.at_least.len(), 7);
    }
}
