//! The layout of an output directory and of a release: every path migstat writes or reads is
//! built here, and the incremental reuse reads paths back through [`Release::owner`].
//!
//! Input: an output directory or a release (or staging) directory. Output: paths. A leaf module.
//!
//! ```text
//! out/current -> releases/<run-id>     symlink, switched by one rename: what readers use
//! out/releases/<run-id>/               complete releases
//! out/failed/<run-id>/                 rejected runs, kept for inspection
//! out/history.jsonl                    one JSON line per run, whatever its outcome
//! out/.staging/<run-id>/               the run in progress
//! out/.lock                            held (flock) by the running process
//!
//! <release>/manifest.json
//! <release>/quarantine/<source>.parquet
//! <release>/restricted/accepted/<source>/delivery=<k>/part-0.parquet   one part per delivery file
//! <release>/restricted/calibration/<source>.parquet                 a calibrated survey's g by class
//! <release>/restricted/weights/<source>.parquet                     … and each record's weights
//! <release>/restricted/tables/<table>/<partition>/data.parquet      true values
//! <release>/restricted/audit/<table>/<partition>/audit.parquet      protection decisions
//! <release>/restricted/ledger/<group>/<partition>/ledger.parquet    published vintages
//! <release>/public/tables/<table>/<partition>/data.parquet          protected tables
//! <release>/public/sdmx/[2.0/]<table>.csv, public/sdmx/structure.xml
//! <release>/public/codebook.md, public/datapackage.json
//! <release>/report/index.html
//! ```
//!
//! A table's `<partition>` is its period, `2024`, `2024-Q1`, `2024-01` or `2024-12-31` (a stock);
//! a ledger's is the period's key, `ref_year=2024`, … (see `RefPeriod::key`).

use std::path::{Path, PathBuf};

/// The version of this layout, raised whenever a release's files move (2: accepted records as
/// one part per delivery file): part of each source's input key, so that a run never reuses
/// the files of a release laid out otherwise.
pub const VERSION: u32 = 2;

/// The Hive partition key of a source's accepted records: the delivery file's index.
pub const DELIVERY: &str = "delivery";
const DELIVERY_KEY: &str = "delivery=";

/// An output directory (`out/`).
#[derive(Debug, Clone, Copy)]
pub struct Out<'a>(pub &'a Path);

impl Out<'_> {
    pub fn releases(&self) -> PathBuf {
        self.0.join("releases")
    }
    pub fn release(&self, run_id: &str) -> PathBuf {
        self.releases().join(run_id)
    }
    /// The `current` symlink.
    pub fn current(&self) -> PathBuf {
        self.0.join("current")
    }
    /// What `current` points to, relative to the output directory (a relative symlink keeps
    /// the directory movable).
    pub fn current_target(run_id: &str) -> PathBuf {
        Path::new("releases").join(run_id)
    }
    pub fn history(&self) -> PathBuf {
        self.0.join("history.jsonl")
    }
    pub fn lock(&self) -> PathBuf {
        self.0.join(".lock")
    }
    pub fn staging_root(&self) -> PathBuf {
        self.0.join(".staging")
    }
    pub fn staging(&self, run_id: &str) -> PathBuf {
        self.staging_root().join(run_id)
    }
    /// The new `current` symlink before it is renamed over the old one.
    pub fn current_tmp(&self) -> PathBuf {
        self.0.join(".current.tmp")
    }
    pub fn failed_root(&self) -> PathBuf {
        self.0.join("failed")
    }
    pub fn failed(&self, run_id: &str) -> PathBuf {
        self.failed_root().join(run_id)
    }
}

/// A release: published, in staging, or failed (the same layout).
#[derive(Debug, Clone, Copy)]
pub struct Release<'a>(pub &'a Path);

/// The file of a release that holds the manifest.
pub const MANIFEST: &str = "manifest.json";

/// What produced a file of a release, read back from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'p> {
    /// A source's accepted records or quarantine.
    Source(&'p str),
    /// A table's restricted, audit or public file.
    Table(&'p str),
    /// A protection group's ledger.
    Group(&'p str),
}

impl Release<'_> {
    pub fn manifest(&self) -> PathBuf {
        self.0.join(MANIFEST)
    }
    /// A source's accepted records: a Hive-partitioned dataset, one part per delivery file
    /// ([`Release::accepted_part`]), which any Parquet reader reads as one table
    /// (`read_parquet('…/accepted/<source>/*/*.parquet')`).
    pub fn accepted(&self, source: &str) -> PathBuf {
        self.0.join("restricted").join("accepted").join(source)
    }

    /// The accepted records of a source's delivery file `file` (its index among the source's
    /// files, from 0; zero-padded so that the parts list in file order). A file with no
    /// accepted record still has its part, without rows.
    pub fn accepted_part(&self, source: &str, file: usize) -> PathBuf {
        self.accepted(source)
            .join(format!("{DELIVERY}={file:06}"))
            .join("part-0.parquet")
    }

    /// Every part of a source of `files` delivery files, in file order.
    pub fn accepted_parts(&self, source: &str, files: usize) -> Vec<PathBuf> {
        (0..files).map(|i| self.accepted_part(source, i)).collect()
    }
    /// A calibrated survey source's g-weights by class (restricted).
    pub fn calibration(&self, source: &str) -> PathBuf {
        self.0
            .join("restricted")
            .join("calibration")
            .join(format!("{source}.parquet"))
    }

    /// The covariance matrix of a survey's listed tables (its design's `covariance`).
    pub fn covariance(&self, source: &str) -> PathBuf {
        self.0
            .join("restricted")
            .join("covariance")
            .join(format!("{source}.parquet"))
    }

    /// Each record's design and calibrated weight of a calibrated survey.
    pub fn calibrated_weights(&self, source: &str) -> PathBuf {
        self.0
            .join("restricted")
            .join("weights")
            .join(format!("{source}.parquet"))
    }
    pub fn quarantine(&self, source: &str) -> PathBuf {
        self.0.join("quarantine").join(format!("{source}.parquet"))
    }
    pub fn restricted_table(&self, table: &str, partition: &str) -> PathBuf {
        self.0
            .join("restricted")
            .join("tables")
            .join(table)
            .join(partition)
            .join("data.parquet")
    }
    pub fn audit(&self, table: &str, partition: &str) -> PathBuf {
        self.0
            .join("restricted")
            .join("audit")
            .join(table)
            .join(partition)
            .join("audit.parquet")
    }
    pub fn ledger(&self, group: &str, partition: &str) -> PathBuf {
        self.ledger_dir(group)
            .join(partition)
            .join("ledger.parquet")
    }
    /// The directory of a group's ledgers (one partition per period).
    pub fn ledger_dir(&self, group: &str) -> PathBuf {
        self.0
            .join("restricted")
            .join("ledger")
            .join(Self::ledger_name(group))
    }
    /// A group's directory name: its id, which joins its tables' ids, or past 120 bytes (file
    /// systems allow 255) its start told apart by a hash of the whole.
    pub fn ledger_name(group: &str) -> String {
        const MAX: usize = 120;
        if group.len() <= MAX {
            return group.to_string();
        }
        let mut end = MAX - 20;
        while !group.is_char_boundary(end) {
            end -= 1;
        }
        let hash = blake3::hash(group.as_bytes()).to_hex();
        format!("{}+{}", &group[..end], &hash[..16])
    }
    pub fn public(&self) -> PathBuf {
        self.0.join("public")
    }
    pub fn public_tables(&self) -> PathBuf {
        self.public().join("tables")
    }
    pub fn public_table_dir(&self, table: &str) -> PathBuf {
        self.public_tables().join(table)
    }
    pub fn public_table(&self, table: &str, partition: &str) -> PathBuf {
        self.public_table_dir(table)
            .join(partition)
            .join("data.parquet")
    }
    pub fn sdmx_dir(&self) -> PathBuf {
        self.public().join("sdmx")
    }
    /// A table's SDMX-CSV file in `version` (`1.0`, the default directory, or `2.0`).
    pub fn sdmx_csv(&self, table: &str, version: &str) -> PathBuf {
        match version {
            "2.0" => self.sdmx_dir().join("2.0").join(format!("{table}.csv")),
            _ => self.sdmx_dir().join(format!("{table}.csv")),
        }
    }
    pub fn sdmx_structure(&self) -> PathBuf {
        self.sdmx_dir().join("structure.xml")
    }
    pub fn codebook(&self) -> PathBuf {
        self.public().join("codebook.md")
    }
    /// The codebook in a further publication language: `codebook.<lang>.md` (the first
    /// language's is [`Release::codebook`]).
    pub fn codebook_in(&self, lang: &str) -> PathBuf {
        self.public().join(format!("codebook.{lang}.md"))
    }
    /// The reference metadata of the public tables (SIMS), as JSON.
    pub fn sims(&self) -> PathBuf {
        self.public().join("metadata").join("sims.json")
    }
    /// The same as an SDMX-ML 2.1 generic metadata set.
    pub fn sdmx_metadata(&self) -> PathBuf {
        self.sdmx_dir().join("metadata.xml")
    }
    pub fn datapackage(&self) -> PathBuf {
        self.public().join("datapackage.json")
    }
    pub fn report(&self) -> PathBuf {
        self.0.join("report").join(report_page(None))
    }
    /// The report in a further publication language: `report/index.<lang>.html`.
    pub fn report_in(&self, lang: &str) -> PathBuf {
        self.0.join("report").join(report_page(Some(lang)))
    }

    /// What produced the file at `path` (relative to the release, `/`-separated), if a source,
    /// a table or a group did: the inverse of the builders above.
    pub fn owner(path: &str) -> Option<Owner<'_>> {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [
                "restricted",
                "accepted" | "calibration" | "weights" | "covariance",
                f,
            ]
            | ["quarantine", f] => f.strip_suffix(".parquet").map(Owner::Source),
            [
                "restricted",
                "accepted",
                source,
                partition,
                "part-0.parquet",
            ] if partition.starts_with(DELIVERY_KEY) => Some(Owner::Source(source)),
            ["restricted" | "public", "tables", t, ..] | ["restricted", "audit", t, ..] => {
                Some(Owner::Table(t))
            }
            ["restricted", "ledger", g, ..] => Some(Owner::Group(g)),
            _ => None,
        }
    }

    /// A public table's path relative to the release, as the manifest lists it.
    pub fn public_table_entry(table: &str, partition: &str) -> String {
        format!("public/tables/{table}/{partition}/data.parquet")
    }

    /// An audit file's path relative to the release, as the manifest lists it.
    pub fn audit_entry(table: &str, partition: &str) -> String {
        format!("restricted/audit/{table}/{partition}/audit.parquet")
    }
}

/// A report page's file name: `index.html` for the first publication language,
/// `index.<lang>.html` for the others (the pages link to each other by these names).
pub fn report_page(lang: Option<&str>) -> String {
    match lang {
        None => "index.html".to_string(),
        Some(l) => format!("index.{l}.html"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_path_reads_back_to_its_owner() {
        let root = Path::new("/r");
        let r = Release(root);
        let rel = |p: PathBuf| -> String {
            p.strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        };
        assert_eq!(
            Release::owner(&rel(r.accepted_part("permits", 0))),
            Some(Owner::Source("permits"))
        );
        assert_eq!(
            rel(r.accepted_part("permits", 12)),
            "restricted/accepted/permits/delivery=000012/part-0.parquet"
        );
        // Not a part: owned by no source.
        assert_eq!(
            Release::owner("restricted/accepted/permits/x=1/part-0.parquet"),
            None
        );
        assert_eq!(
            Release::owner(&rel(r.quarantine("border"))),
            Some(Owner::Source("border"))
        );
        assert_eq!(
            Release::owner(&rel(r.calibration("survey"))),
            Some(Owner::Source("survey"))
        );
        assert_eq!(
            Release::owner(&rel(r.covariance("survey"))),
            Some(Owner::Source("survey"))
        );
        let p = "ref_year=2024";
        assert_eq!(
            Release::owner(&rel(r.restricted_table("asylum", p))),
            Some(Owner::Table("asylum"))
        );
        assert_eq!(
            Release::owner(&rel(r.public_table("asylum", p))),
            Some(Owner::Table("asylum"))
        );
        assert_eq!(
            Release::owner(&rel(r.audit("asylum", p))),
            Some(Owner::Table("asylum"))
        );
        assert_eq!(
            Release::owner(&rel(r.ledger("g1", p))),
            Some(Owner::Group("g1"))
        );
        // A group of many tables: its name is bounded, and still read back.
        let long = ["a-table-with-a-long-name"; 12].join("+");
        let name = Release::ledger_name(&long);
        assert!(name.len() <= 120 && name != Release::ledger_name(&format!("{long}x")));
        assert_eq!(
            Release::owner(&rel(r.ledger(&long, p))),
            Some(Owner::Group(name.as_str()))
        );
        assert_eq!(
            Release::owner(&rel(r.calibrated_weights("survey"))),
            Some(Owner::Source("survey"))
        );
        assert_eq!(Release::owner(&rel(r.manifest())), None);
        assert_eq!(Release::owner(&rel(r.sdmx_structure())), None);
        assert_eq!(
            rel(r.public_table("t", p)),
            Release::public_table_entry("t", p)
        );
        assert_eq!(rel(r.audit("t", p)), Release::audit_entry("t", p));
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        // Spelled by hand from the module documentation (readers' scripts depend on it).
        let r = Release(Path::new("R"));
        assert_eq!(
            r.public_table("t", "ref_year=2024"),
            Path::new("R/public/tables/t/ref_year=2024/data.parquet")
        );
        assert_eq!(r.sdmx_csv("t", "2.0"), Path::new("R/public/sdmx/2.0/t.csv"));
        assert_eq!(r.sdmx_csv("t", "1.0"), Path::new("R/public/sdmx/t.csv"));
        assert_eq!(r.report(), Path::new("R/report/index.html"));
        assert_eq!(
            r.calibration("s"),
            Path::new("R/restricted/calibration/s.parquet")
        );
        assert_eq!(
            r.calibrated_weights("s"),
            Path::new("R/restricted/weights/s.parquet")
        );
        let o = Out(Path::new("out"));
        assert_eq!(o.staging("x"), Path::new("out/.staging/x"));
        assert_eq!(o.failed("x"), Path::new("out/failed/x"));
        assert_eq!(o.lock(), Path::new("out/.lock"));
    }
}
