//! The manifest and the run history: the only internal types migstat serializes, and the
//! contract between a run and everything that reads its record (the export writers, `verify`,
//! `history`, the next run's incremental reuse, and operators' own tools).
//!
//! Input: nothing (types). Output: [`Manifest`] (`manifest.json` of a release) and
//! [`HistoryRecord`] (one line of `history.jsonl`), with the parts they are made of. Their JSON
//! form is described by versioned JSON Schemas, `schemas/run/manifest.schema.json` and
//! `schemas/run/history.schema.json` ([`MANIFEST_SCHEMA`], [`HISTORY_SCHEMA`]); a test checks real
//! runs against them. A leaf module: it depends only on `error`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Rejection, Result};

/// The `$id` of the JSON Schema `manifest.json` follows; bump it with any incompatible change.
pub const MANIFEST_SCHEMA: &str = "https://migstat.org/schemas/manifest/1";
/// The `$id` of the JSON Schema each line of `history.jsonl` follows.
pub const HISTORY_SCHEMA: &str = "https://migstat.org/schemas/history/1";

/// How a run ended: `manifest.json` records `succeeded`, `up_to_date` or `rejected`; a
/// history line any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A release was published and made current.
    Succeeded,
    /// Nothing changed since the current release (same run key): nothing was written.
    UpToDate,
    /// A delivery or table failed its checks (exit 65); the run is kept under `failed/`.
    Rejected,
    /// An error stopped the run.
    Failed,
    /// Another run held the output directory (exit 75).
    Locked,
    /// A signal (SIGTERM, SIGINT) stopped the run before it published (exit 143, 130).
    Interrupted,
}

impl RunStatus {
    /// The status as every output spells it.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::UpToDate => "up_to_date",
            RunStatus::Rejected => "rejected",
            RunStatus::Failed => "failed",
            RunStatus::Locked => "locked",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// Whether the run ended without publishing because something was wrong.
    pub fn is_failure(self) -> bool {
        match self {
            RunStatus::Rejected
            | RunStatus::Failed
            | RunStatus::Locked
            | RunStatus::Interrupted => true,
            RunStatus::Succeeded | RunStatus::UpToDate => false,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// The disclosure control applied to a published table, as the manifest, the public files'
/// metadata and the audit record it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Threshold rule and secondary suppression, audited.
    #[default]
    Suppress,
    /// Survey estimates: cells with fewer respondents than `min_n` suppressed, with their
    /// complements.
    SurveyQuality,
    /// Deterministic rounding of the finest cells.
    Round,
    /// Random rounding of the finest cells (keyed).
    RandomRound,
    /// The cell key method on the finest cells.
    CellKey,
}

impl Method {
    /// The method as every output spells it (and the spec, for the four a spec names).
    pub fn name(self) -> &'static str {
        match self {
            Method::Suppress => "suppress",
            Method::SurveyQuality => "survey_quality",
            Method::Round => "round",
            Method::RandomRound => "random_round",
            Method::CellKey => "cell_key",
        }
    }

    /// Whether the method changes values (noise, rounding) rather than hiding cells.
    pub fn is_perturbative(self) -> bool {
        match self {
            Method::Round | Method::RandomRound | Method::CellKey => true,
            Method::Suppress | Method::SurveyQuality => false,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputFile {
    /// As found from the spec: relative to the spec file's directory.
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceReport {
    pub id: String,
    pub files: Vec<InputFile>,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_quarantined: u64,
    pub max_invalid_fraction: f64,
    /// Problems per rule; a row with two problems counts under both.
    pub quarantine_by_rule: BTreeMap<String, u64>,
    /// Raw values no crosswalk mapped, most frequent first: what to add to the crosswalks.
    pub unmapped_codes: Vec<UnmappedValue>,
    /// Distinct unmapped values left out of `unmapped_codes` (it lists the most frequent 100).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unmapped_omitted: u64,
    pub seconds: f64,
    /// blake3 of what this source's results depend on: migstat's version, the spec hash (spec,
    /// schemas, code lists, crosswalks) and the hashes of its input files.
    #[serde(default)]
    pub input_key: String,
    /// Taken over unchanged from the previous release (same `input_key`).
    #[serde(default)]
    pub reused: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub run_id: String,
    /// `succeeded` or `rejected`.
    pub status: RunStatus,
    pub pipeline_id: String,
    pub pipeline_hash: String,
    pub spec: String,
    pub migstat_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub reference_date: String,
    pub reference_period: [String; 2],
    pub sources: Vec<SourceReport>,
    /// Sources rejected as a whole; non-empty exactly when `status` is `rejected`.
    pub rejections: Vec<Rejection>,
    /// What disclosure control did to each published table.
    pub protection: Vec<Summary>,
    pub outputs: Vec<OutputFile>,
    /// blake3 of every source's `input_key`: a rerun with the same key has nothing to do.
    #[serde(default)]
    pub run_key: String,
    /// Seconds per stage: `source:<id>` (read, validate, harmonize, streamed tables; with an
    /// engine that counts after the pass, its counting too, also alone as `engine:<id>`),
    /// `table:<id>` (build and write a table outside a protected group, or a survey table's
    /// estimates), `group:<id>` (build, protect and write a group's tables, from its start to
    /// its end: count groups run side by side, so their seconds overlap) and `documents`
    /// (codebook, SDMX, report).
    #[serde(default)]
    pub seconds: BTreeMap<String, f64>,
    /// Per table: its reference periods and the records left out of every one of them.
    #[serde(default)]
    pub periods: BTreeMap<String, TablePeriods>,
}

/// A table's reference periods in a release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TablePeriods {
    /// `A`, `Q`, `M` (SDMX `FREQ`), `_O` for another span.
    pub freq: String,
    /// The periods published, in SDMX `TIME_PERIOD` form (a stock: its dates).
    pub periods: Vec<String>,
    /// The event date field that placed the records (`None`: every record is in the period).
    pub date: Option<String>,
    /// Records (flows: first records) whose date is in no period: left out, counted here.
    pub outside: Outside,
    /// The periods still provisional (OBS_STATUS `P`; `[publish] provisional_months`).
    #[serde(default)]
    pub provisional: Vec<String>,
}

/// The longest `error` a history line carries, in bytes (a rejection's reasons are capped
/// each; this bounds their sum and every other error, whatever the input).
pub const HISTORY_ERROR_MAX: usize = 16 * 1024;

/// One line of `out/history.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryRecord {
    pub run_id: String,
    pub pipeline_id: String,
    pub started_at: String,
    pub finished_at: String,
    /// `succeeded`, `up_to_date`, `rejected` (a delivery or table failed its checks: exit 65),
    /// `failed` (an error), `locked` (another run held the directory: exit 75) or
    /// `interrupted` (SIGTERM or SIGINT stopped it: exit 143 or 130).
    pub status: RunStatus,
    pub exit_code: i32,
    /// Why it was rejected or failed.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub sources: Vec<SourceHistory>,
    /// Tables published to the public tier.
    #[serde(default)]
    pub tables_published: Vec<String>,
    /// Seconds per stage, as the manifest's (`source:`, `table:`, `group:`, `documents`); the
    /// run's own length is `finished_at` − `started_at`.
    #[serde(default)]
    pub seconds: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceHistory {
    pub id: String,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_quarantined: u64,
    pub quarantine_by_rule: std::collections::BTreeMap<String, u64>,
    /// Taken over from the previous release unchanged (its inputs had the same hashes).
    #[serde(default)]
    pub reused: bool,
}

/// A raw value no crosswalk mapped, with how often it was seen: the run report lists these so a
/// statistician can extend the crosswalk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnmappedValue {
    /// The derived column.
    pub column: String,
    /// The raw field it is derived from.
    pub field: String,
    pub raw: String,
    pub count: u64,
    /// `quarantined`, or the code it was mapped to.
    pub action: String,
}

/// What protection did to a table, for the manifest (restricted: it counts changed cells).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub table: String,
    /// The reference period of the protected partition (SDMX `TIME_PERIOD` form).
    #[serde(default)]
    pub ref_period: String,
    /// The group of linked tables the table was protected with.
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub members: Vec<String>,
    pub method: Method,
    pub cells: u64,
    pub primary: u64,
    pub secondary: u64,
    /// Audit: cells checked, and the narrowest interval found among them.
    pub audited: u64,
    /// Of those, the cells a linear program had to settle (the rest by checked directions).
    #[serde(default)]
    pub proved_by_lp: u64,
    pub narrowest_interval: Option<f64>,
    pub audit_passed: bool,
    pub failures: Vec<String>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// A survey contrast: the dimension it is taken across and the codes of its terms, whose
    /// cells (in the table it contrasts) decide each of its cells' status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrast: Option<(String, Vec<String>)>,
    #[serde(default)]
    pub threshold: Option<u64>,
    #[serde(default)]
    pub protection_range: Option<f64>,
    #[serde(default)]
    pub publish_grand_total: bool,
    #[serde(default)]
    pub base: Option<u64>,
    /// Whether every published margin is the sum of the published cells below it.
    #[serde(default)]
    pub additive: bool,
    /// The publication of this period the public file is (1 = the first).
    #[serde(default)]
    pub vintage: u32,
    /// Published again unchanged from an earlier release (revisions = freeze).
    #[serde(default)]
    pub frozen: bool,
    /// Cells whose true value changed since the published vintage (waiting for a revision).
    #[serde(default)]
    pub pending_changes: u64,
    /// Cells the audit's repair suppressed beyond the Gaussian pattern.
    #[serde(default)]
    pub repaired: u64,
    /// The secondary method (suppression).
    #[serde(default)]
    pub secondary_method: Option<String>,
    /// The period is provisional: its published values carry OBS_STATUS `P`.
    #[serde(default)]
    pub provisional: bool,
    /// A revision: the member's cells whose published value (or suppression) changed since the
    /// previous vintage of the period.
    #[serde(default)]
    pub revised_cells: u64,
}

/// The protection settings and counts a public file carries in its metadata: the method and
/// its parameters (public knowledge), never the key, counts of changes, or anything restricted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct PublicProtection {
    pub table: String,
    pub group: String,
    pub members: Vec<String>,
    pub method: Method,
    pub dimensions: Vec<String>,
    pub threshold: Option<u64>,
    pub protection_range: Option<f64>,
    pub base: Option<u64>,
    pub additive: bool,
    pub vintage: u32,
    pub cells: u64,
    pub suppressed: u64,
}

impl From<&Summary> for PublicProtection {
    fn from(s: &Summary) -> Self {
        PublicProtection {
            table: s.table.clone(),
            group: s.group.clone(),
            members: s.members.clone(),
            method: s.method,
            dimensions: s.dimensions.clone(),
            threshold: s.threshold,
            protection_range: s.protection_range,
            base: s.base,
            additive: s.additive,
            vintage: s.vintage,
            cells: s.cells,
            suppressed: s.primary + s.secondary,
        }
    }
}

/// A written file, as the manifest lists it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct OutputFile {
    /// Relative to the output directory, `/`-separated.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
}

/// Size and blake3 hash of a file, streamed in blocks of 8 MiB, each hashed on every core
/// (BLAKE3 is a tree: the hash does not depend on how the input is cut or shared out).
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    use std::io::Read as _;
    let mut h = blake3::Hasher::new();
    let mut file = File::open(path).at(path)?;
    // The block is sized to the file (64 KiB to 8 MiB): a fresh zeroed 8 MiB per small file
    // was a quarter of the sample pipeline's CPU time.
    let len = file.metadata().at(path)?.len();
    let size = len.clamp(64 << 10, 8 << 20) as usize;
    let mut block = vec![0u8; size];
    let mut bytes = 0u64;
    loop {
        // Fill the block (a read may return less), so that each block is large enough to share.
        let mut filled = 0;
        while filled < block.len() {
            match file.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).at(path),
            }
        }
        if filled == 0 {
            break;
        }
        if filled >= 1 << 20 {
            h.update_rayon(&block[..filled]);
        } else {
            h.update(&block[..filled]);
        }
        bytes += filled as u64;
    }
    Ok((bytes, h.finalize().to_hex().to_string()))
}

/// A file hashed and counted as it is written, so that its [`OutputFile`] needs no second
/// read: the bytes hashed are the bytes handed to the file, in order (BLAKE3 does not depend on
/// how they are cut into writes). Buffered: callers may write field by field.
pub struct HashedFile {
    file: std::io::BufWriter<File>,
    path: std::path::PathBuf,
    hash: blake3::Hasher,
    bytes: u64,
}

impl HashedFile {
    /// Create (or truncate) `path`, its parent directories included.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).at(parent)?;
        }
        Ok(HashedFile {
            file: std::io::BufWriter::with_capacity(256 << 10, File::create(path).at(path)?),
            path: path.to_path_buf(),
            hash: blake3::Hasher::new(),
            bytes: 0,
        })
    }

    /// The path written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush the file and state it: `path` relative to `dir`, `rows` as given.
    pub fn finish(self, dir: &Path, rows: u64) -> Result<OutputFile> {
        use std::io::Write as _;
        let HashedFile {
            mut file,
            path,
            hash,
            bytes,
        } = self;
        file.flush().at(&path)?;
        Ok(OutputFile {
            path: relative(&path, dir),
            rows,
            bytes,
            blake3: hash.finalize().to_hex().to_string(),
        })
    }
}

impl std::io::Write for HashedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// `path` relative to `base`, with `/` separators (how the manifest names its files).
pub fn relative(path: &Path, base: &Path) -> String {
    let Ok(p) = path.strip_prefix(base) else {
        // Not below `base`: the path as it is (joining its components would double the root).
        return path.to_string_lossy().replace('\\', "/");
    };
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Records a table leaves out because their event date places them in none of its periods
/// (reported in the manifest: nothing is dropped silently).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outside {
    /// No event date (the field is empty or not a date).
    pub no_date: u64,
    /// Dated before the first period.
    pub before: u64,
    /// Dated after the last period.
    pub after: u64,
    /// Dated between two declared periods.
    #[serde(default)]
    pub between: u64,
    /// Migration tables: crossings in a period that may be migrations the deliveries cannot
    /// decide yet (the rule's window runs past their last day; see `residence`).
    #[serde(default)]
    pub undetermined: u64,
}

impl std::ops::AddAssign for Outside {
    fn add_assign(&mut self, o: Outside) {
        self.no_date += o.no_date;
        self.before += o.before;
        self.after += o.after;
        self.between += o.between;
        self.undetermined += o.undetermined;
    }
}

impl Outside {
    pub fn total(&self) -> u64 {
        self.no_date + self.before + self.after + self.between + self.undetermined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_hashed_in_blocks_on_every_core_has_its_one_shot_blake3() {
        let dir = tempfile::tempdir().unwrap();
        // Empty, one byte, and a block and a bit (the second block short).
        for len in [0usize, 1, (8 << 20) + 4099] {
            let content: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &content).unwrap();
            let (bytes, hash) = hash_file(&path).unwrap();
            assert_eq!(bytes, len as u64);
            assert_eq!(hash, blake3::hash(&content).to_hex().to_string());
        }
    }

    #[test]
    fn a_file_hashed_as_written_states_the_bytes_on_disk() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        // Written in uneven pieces, more than the buffer, into a directory not there yet.
        let content: Vec<u8> = (0..(300usize << 10) + 7)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let path = dir.path().join("a").join("b.csv");
        let mut f = HashedFile::create(&path).unwrap();
        for piece in content.chunks(1000 + 17) {
            f.write_all(piece).unwrap();
        }
        let out = f.finish(dir.path(), 3).unwrap();
        assert_eq!(out.path, "a/b.csv");
        assert_eq!(out.rows, 3);
        assert_eq!(out.bytes, content.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), content);
        assert_eq!(out.blake3, blake3::hash(&content).to_hex().to_string());
    }
}
