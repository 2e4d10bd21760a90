//! Survey sums gathered part by part (part of the disaggregate stage): each delivery file's
//! accepted records summed on their own — in this process as the pass reads them, or by a
//! cluster's executor that reads the file's part — and the parts' partials merged in file order.
//!
//! Input: a source's [`Design`], its survey tables, and either record chunks tagged with their
//! file's index ([`ByPart::add`]) or finished parts' partials ([`ByPart::merge`], e.g. decoded
//! with [`SourceSums::from_bytes`]). Output: the source's [`SourceSums`], what one
//! [`DesignPartial`] and one [`Partial`] per table would hold had they read every record.
//!
//! Whichever process sums a file, the arithmetic is the same: a part's sums are added record by
//! record in record order (chunks do not matter), and the parts are added to the whole in file
//! order. So a release is byte-identical whether one process read every file or a cluster's
//! executors read them. Merging renumbers what a part interned (codes, strata, PSUs, SSUs,
//! calibration classes) into the whole's ids in first-seen order, the order one reader of every
//! record in file order would have given them, and shifts a part's record numbers (PSUs of a
//! design without a PSU column, the record sequence that breaks quantile ties) past the
//! records before it.

use std::collections::HashMap;

use polars::prelude::DataFrame;

use super::{
    CellIds, DesignPartial, FpcStage, Interner, MISSING_SHOWN, Merge, PROBLEMS_SHOWN, Partial,
    QReps, QSums, Unit, fpc_differs,
};
use crate::error::{Error, Result};
use crate::spec::{Design, TableSpec};

/// A source's survey sums: its design's partial and one partial per survey table, in the order
/// of the tables asked for.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourceSums {
    pub design: DesignPartial,
    pub tables: Vec<Partial>,
}

impl SourceSums {
    /// The sums as bytes (bincode: every float's bits kept), to cross a process boundary. The
    /// replicate weights file a design reads is not sent (the receiver reads it again if it
    /// needs it).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| Error::Internal(format!("survey sums not encoded: {e}")))
    }

    /// Sums written by [`SourceSums::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<SourceSums, String> {
        let (sums, read) =
            bincode::serde::decode_from_slice::<SourceSums, _>(bytes, bincode::config::standard())
                .map_err(|e| e.to_string())?;
        if read != bytes.len() {
            return Err(format!(
                "{} bytes after the survey sums",
                bytes.len() - read
            ));
        }
        Ok(sums)
    }

    /// Add `part`, the sums of the file after every file added so far.
    pub fn merge(&mut self, design: &Design, part: SourceSums) {
        let ids = self.design.merge(design, part.design);
        if self.tables.len() < part.tables.len() {
            self.tables.resize_with(part.tables.len(), Partial::default);
        }
        for (whole, p) in self.tables.iter_mut().zip(part.tables) {
            whole.merge(p, &ids);
        }
    }
}

/// A source's survey sums gathered file by file: records of one file at a time, files in order.
pub struct ByPart<'a> {
    design: &'a Design,
    tables: &'a [&'a TableSpec],
    whole: SourceSums,
    /// The file being summed (its index) and its sums so far.
    part: Option<(usize, SourceSums)>,
}

impl<'a> ByPart<'a> {
    /// Nothing summed yet.
    pub fn new(design: &'a Design, tables: &'a [&'a TableSpec]) -> Self {
        ByPart {
            design,
            tables,
            whole: SourceSums::default(),
            part: None,
        }
    }

    /// Sum `rows`, records of file `file` (files come in order, each file's records in order).
    pub fn add(&mut self, file: usize, rows: &DataFrame) -> Result<()> {
        match &self.part {
            Some((open, _)) if *open > file => {
                return Err(Error::Internal(format!(
                    "survey sums: records of file {file} came after file {open}'s"
                )));
            }
            Some((open, _)) if *open < file => self.fold(),
            _ => {}
        }
        let n = self.tables.len();
        if self.part.is_none() {
            // A replicate weights file read for an earlier file is handed on, not read again
            // (it comes back with the part's sums).
            let design = DesignPartial {
                rep_file: self.whole.design.rep_file.take(),
                rep_problems: self.whole.design.rep_problems.clone(),
                ..Default::default()
            };
            self.part = Some((
                file,
                SourceSums {
                    design,
                    tables: vec![Partial::default(); n],
                },
            ));
        }
        let Some((_, sums)) = &mut self.part else {
            return Err(Error::Internal("survey sums: no part open".into()));
        };
        let units = sums.design.add_chunk(self.design, rows)?;
        for (t, p) in self.tables.iter().zip(sums.tables.iter_mut()) {
            p.add_chunk(t, &units, rows)?;
        }
        Ok(())
    }

    /// Add the sums of the next file, summed elsewhere (after every file added so far).
    pub fn merge(&mut self, part: SourceSums) {
        self.fold();
        self.whole.merge(self.design, part);
    }

    fn fold(&mut self) {
        if let Some((_, part)) = self.part.take() {
            self.whole.merge(self.design, part);
        }
    }

    /// Every file's sums, merged.
    pub fn finish(mut self) -> SourceSums {
        self.fold();
        let n = self.tables.len();
        let mut whole = self.whole;
        if whole.tables.len() < n {
            whole.tables.resize_with(n, Partial::default);
        }
        whole
    }
}

impl Interner {
    /// Intern `other`'s names in its id order; where each of its ids lands here.
    fn absorb(&mut self, other: &Interner) -> Vec<u32> {
        other.names.iter().map(|n| self.id(n)).collect()
    }
}

/// Where a part's design ids land in the whole.
pub(super) struct Ids {
    strata: Vec<u32>,
    psus: Vec<u32>,
    /// Added to a part's PSU ids when each record is its own PSU (they count records).
    record_psus: Option<u32>,
    ssus: Vec<u32>,
    classes: Vec<u32>,
}

/// Id `i` of a part in the whole (an id a part never interned is one the reader gives without
/// interning — 0 for a design without SSUs or classes — and stays).
fn at(map: &[u32], i: u32) -> u32 {
    map.get(i as usize).copied().unwrap_or(i)
}

impl Ids {
    fn unit(&self, u: Unit) -> Unit {
        let psu = match self.record_psus {
            Some(offset) => u.1 + offset,
            None => at(&self.psus, u.1),
        };
        (
            at(&self.strata, u.0),
            psu,
            at(&self.ssus, u.2),
            at(&self.classes, u.3),
        )
    }

    fn class(&self, c: u32) -> u32 {
        at(&self.classes, c)
    }
}

/// A map of sum vectors (hash or ordered), added to key by key.
trait VecMap<K> {
    fn add(&mut self, key: K, v: Vec<f64>);
}

impl<K: std::hash::Hash + Eq> VecMap<K> for HashMap<K, Vec<f64>> {
    fn add(&mut self, key: K, v: Vec<f64>) {
        match self.get_mut(&key) {
            Some(acc) => acc.merge(&v),
            None => {
                self.insert(key, v);
            }
        }
    }
}

impl<K: Ord> VecMap<K> for std::collections::BTreeMap<K, Vec<f64>> {
    fn add(&mut self, key: K, v: Vec<f64>) {
        match self.get_mut(&key) {
            Some(acc) => acc.merge(&v),
            None => {
                self.insert(key, v);
            }
        }
    }
}

impl DesignPartial {
    /// Add the design as `o` saw it (the next file's records); where its ids land.
    fn merge(&mut self, design: &Design, o: DesignPartial) -> Ids {
        let record_psus = (o.next_record_psu > 0).then_some(self.next_record_psu);
        self.next_record_psu += o.next_record_psu;
        let ids = Ids {
            strata: self.strata.absorb(&o.strata),
            psus: self.psus.absorb(&o.psus),
            record_psus,
            ssus: self.ssus.absorb(&o.ssus),
            classes: self.classes.absorb(&o.classes),
        };
        for (h, psus) in o.tree {
            for (i, ssus) in psus {
                let (h, i, _, _) = ids.unit((h, i, 0, 0));
                let mine = self.tree.entry(h).or_default().entry(i).or_default();
                mine.extend(ssus.into_iter().map(|j| at(&ids.ssus, j)));
            }
        }
        // FPCs: one value per stratum (per PSU at stage 2), the first file's kept.
        for (h, v) in o.fpc1 {
            let h = at(&ids.strata, h);
            let first = *self.fpc1.entry(h).or_insert(v);
            if first != v && self.problems.len() < PROBLEMS_SHOWN {
                self.problems.insert(fpc_differs(
                    FpcStage::One,
                    design.fpc.as_deref().unwrap_or_default(),
                    self.strata.name(h),
                    first,
                    v,
                ));
            }
        }
        for ((h, i), v) in o.fpc2 {
            let (h, i, _, _) = ids.unit((h, i, 0, 0));
            let first = *self.fpc2.entry((h, i)).or_insert(v);
            if first != v && self.problems.len() < PROBLEMS_SHOWN {
                self.problems.insert(fpc_differs(
                    FpcStage::Two,
                    design.fpc_ssu.as_deref().unwrap_or_default(),
                    self.psus.name(i),
                    first,
                    v,
                ));
            }
        }
        for p in o.problems {
            if self.problems.len() < PROBLEMS_SHOWN || self.problems.contains(&p) {
                self.problems.insert(p);
            }
        }
        if self.gram.is_empty() {
            self.gram = o.gram;
        } else {
            self.gram.merge(&o.gram);
        }
        // A replicate design keeps its class totals by class alone (unit (0, 0, 0, class)).
        let replicate = design.replicates.is_some();
        let class_unit = |u: Unit| match replicate {
            true => (0, 0, 0, ids.class(u.3)),
            false => ids.unit(u),
        };
        for (u, w) in o.class_w {
            *self.class_w.entry(class_unit(u)).or_default() += w;
        }
        for (u, n) in o.class_n {
            *self.class_n.entry(class_unit(u)).or_default() += n;
        }
        for (c, v) in o.class_reps {
            self.class_reps.add(ids.class(c), v);
        }
        for (c, v) in o.class_gram {
            self.class_gram.add(ids.class(c), v);
        }
        if self.rep_file.is_none() {
            self.rep_file = o.rep_file;
        }
        self.rep_problems.extend(o.rep_problems);
        self.rep_missing.0 += o.rep_missing.0;
        for key in o.rep_missing.1 {
            if self.rep_missing.1.len() < MISSING_SHOWN {
                self.rep_missing.1.push(key);
            }
        }
        ids
    }
}

impl Partial {
    /// Add a table's sums of the next file, whose design ids land where `ids` says.
    fn merge(&mut self, o: Partial, ids: &Ids) {
        if self.codes.len() < o.codes.len() {
            self.codes.resize_with(o.codes.len(), Interner::default);
        }
        let codes: Vec<Vec<u32>> = self
            .codes
            .iter_mut()
            .zip(&o.codes)
            .map(|(mine, theirs)| mine.absorb(theirs))
            .collect();
        let cell = |c: CellIds| -> CellIds {
            let mut out = c;
            for (slot, map) in out.iter_mut().zip(&codes) {
                *slot = at(map, *slot);
            }
            out
        };
        for ((c, u), s) in o.z {
            self.z.entry((cell(c), ids.unit(u))).or_default().add(&s);
        }
        for (h, i) in o.domain {
            let (h, i, _, _) = ids.unit((h, i, 0, 0));
            self.domain.insert((h, i));
        }
        for ((c, class), v) in o.reps {
            self.reps.add((cell(c), ids.class(class)), v);
        }
        // A part's record numbers follow the records of the files before it.
        let offset = self.seen;
        self.seen += o.seen;
        for ((c, u, value), mut q) in o.q {
            for e in [&mut q.first, &mut q.last].into_iter().flatten() {
                e.0 += offset;
            }
            let mine: &mut QSums = self.q.entry((cell(c), ids.unit(u), value)).or_default();
            mine.merge(&q);
        }
        for ((c, class, value), mut q) in o.qreps {
            for k in 0..q.n.len() {
                if q.n[k] > 0 {
                    q.first[k].0 += offset;
                    q.last[k].0 += offset;
                }
            }
            let key = (cell(c), ids.class(class), value);
            match self.qreps.get_mut(&key) {
                Some(mine) => mine.merge(&q),
                None => {
                    let _: Option<QReps> = self.qreps.insert(key, q);
                }
            }
        }
        for (c, v) in o.qgram {
            self.qgram.add(cell(c), v);
        }
        for ((c, u, w), n) in o.lik {
            *self.lik.entry((cell(c), ids.unit(u), w)).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    fn design(psu: bool, fpc: bool) -> Design {
        Design {
            weight: Some("w".into()),
            strata: Some("h".into()),
            psu: psu.then(|| "p".into()),
            ssu: None,
            fpc: fpc.then(|| "f".into()),
            fpc_ssu: None,
            lonely_psu: crate::spec::LonelyPsu::Remove,
            replicates: None,
            confidence: 0.95,
            cv_caution: 0.165,
            cv_suppress: 0.35,
            min_n: 0,
            calibration: None,
            nonresponse: None,
            covariance: Vec::new(),
        }
    }

    /// A record: (stratum, PSU, weight, FPC).
    type Row = (&'static str, &'static str, f64, f64);

    /// Records as the pass gives them (delivered fields raw).
    fn records(rows: &[Row]) -> DataFrame {
        let col = |name: &str, f: &dyn Fn(&Row) -> String| {
            Column::new(
                crate::vocab::raw_column(name).into(),
                rows.iter().map(f).collect::<Vec<String>>(),
            )
        };
        df_cols(vec![
            col("h", &|r| r.0.to_string()),
            col("p", &|r| r.1.to_string()),
            col("w", &|r| r.2.to_string()),
            col("f", &|r| r.3.to_string()),
        ])
    }

    fn df_cols(cols: Vec<Column>) -> DataFrame {
        let n = cols.first().map_or(0, Column::len);
        DataFrame::new(n, cols).unwrap()
    }

    const ROWS: [Row; 6] = [
        ("B", "B1", 2.5, 10.0),
        ("A", "A1", 1.0, 20.0),
        ("B", "B2", 0.1, 10.0),
        ("A", "A1", 0.2, 20.0),
        ("C", "C1", 0.3, 5.0),
        ("B", "B1", 0.7, 10.0),
    ];

    fn read(d: &Design, chunks: &[&[Row]]) -> DesignPartial {
        let mut p = DesignPartial::default();
        for c in chunks {
            p.add_chunk(d, &records(c)).unwrap();
        }
        p
    }

    #[test]
    fn parts_merged_in_file_order_number_units_as_one_reader() {
        let d = design(true, true);
        let whole = read(&d, &[&ROWS]);
        let mut merged = read(&d, &[&ROWS[..3]]);
        let ids = merged.merge(&d, read(&d, &[&ROWS[3..]]));
        // The second file's A (its id 0) is the whole's 1; its C is new: 2.
        assert_eq!(ids.strata, vec![1, 2, 0]);
        assert_eq!(merged.strata.names, vec!["B", "A", "C"]);
        assert_eq!(merged.strata.names, whole.strata.names);
        assert_eq!(merged.psus.names, whole.psus.names);
        assert_eq!(merged.tree, whole.tree);
        assert_eq!(merged.fpc1, whole.fpc1);
        assert!(merged.problems.is_empty());
        // Every record its own PSU: the second file's PSUs 1..=3 follow the first's 1..=3.
        let d = design(false, false);
        let mut merged = read(&d, &[&ROWS[..3]]);
        let ids = merged.merge(&d, read(&d, &[&ROWS[3..]]));
        assert_eq!(ids.unit((0, 1, 0, 0)).1, 4);
        assert_eq!(merged.next_record_psu, 6);
        assert_eq!(merged.tree, read(&d, &[&ROWS]).tree);
    }

    #[test]
    fn an_fpc_that_differs_between_files_is_named() {
        let d = design(true, true);
        let mut merged = read(&d, &[&ROWS[..2]]);
        merged.merge(&d, read(&d, &[&[("A", "A2", 1.0, 21.0)]]));
        let problems: Vec<&String> = merged.problems.iter().collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("stratum `A` (20 and 21)"),
            "{problems:?}"
        );
    }

    #[test]
    fn sums_cross_a_process_boundary_bit_for_bit() {
        let d = design(true, true);
        let mut sums = SourceSums {
            design: read(&d, &[&ROWS]),
            tables: vec![Partial::default()],
        };
        let cell: CellIds = [0; super::super::MAX_DIMS];
        // Floats whose shortest decimal form would not do: a NaN payload, -0, a subnormal.
        let odd = [
            f64::from_bits(0x7ff8_0000_0000_0001),
            -0.0,
            5e-324,
            0.1 + 0.2,
        ];
        for (k, x) in odd.into_iter().enumerate() {
            sums.tables[0].z.insert(
                (cell, (0, k as u32, 0, 0)),
                super::super::Sums {
                    w: x,
                    y: -x,
                    n: k as u64,
                    ..Default::default()
                },
            );
        }
        sums.tables[0].seen = 6;
        let back = SourceSums::from_bytes(&sums.to_bytes().unwrap()).unwrap();
        assert_eq!(back.design.strata.names, sums.design.strata.names);
        assert_eq!(back.design.strata.ids, sums.design.strata.ids);
        assert_eq!(back.design.tree, sums.design.tree);
        assert_eq!(back.tables[0].seen, 6);
        for (k, x) in odd.into_iter().enumerate() {
            let s = back.tables[0].z[&(cell, (0, k as u32, 0, 0))];
            assert_eq!(
                (s.w.to_bits(), s.y.to_bits()),
                (x.to_bits(), (-x).to_bits())
            );
        }
        let mut bytes = sums.to_bytes().unwrap();
        bytes.push(0);
        assert!(SourceSums::from_bytes(&bytes).is_err());
        assert!(SourceSums::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn record_numbers_run_on_from_one_file_to_the_next() {
        let cell: CellIds = [0; super::super::MAX_DIMS];
        let part = |seqs: &[u64]| {
            let mut p = Partial {
                seen: 10,
                ..Default::default()
            };
            let q = p.q.entry((cell, (0, 0, 0, 0), 7)).or_default();
            for &s in seqs {
                q.add_record(s, 1.0);
            }
            p
        };
        let ids = Ids {
            strata: vec![],
            psus: vec![],
            record_psus: None,
            ssus: vec![],
            classes: vec![],
        };
        let mut whole = part(&[3, 8]);
        whole.merge(part(&[1, 4]), &ids);
        let q = whole.q[&(cell, (0, 0, 0, 0), 7)];
        assert_eq!((q.first.unwrap().0, q.last.unwrap().0, q.nz), (3, 14, 4));
        assert_eq!(whole.seen, 20);
    }
}
