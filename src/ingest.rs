//! Ingest: reads a source's files as they arrive and cuts them into bounded chunks of raw text.
//!
//! Input: a [`SourcePlan`] file: CSV (UTF-8 with or without BOM, or Windows-1252; any delimiter
//! and dialect: quote and escape characters, CR-only, CRLF or LF line ends, comment lines),
//! Parquet (any physical type pandas, polars, DuckDB or arrow write), an Excel worksheet
//! (feature `excel`), or an SPSS or Stata file (feature `readstat`, in `ingest/statfile.rs`,
//! which also hands on each file's value labels). Output: [`RawChunk`]s of at most `chunk_rows`
//! records, one string column per schema field (typed cells written as the text validation
//! reads), with each record's physical line (CSV; the sheet row for Excel) and record number,
//! plus the structural problems found while reading (ragged rows, invalid bytes, cells that cannot be their field's type). Values are not
//! otherwise interpreted here. Each file's bytes, as read, must be those hashed when the run
//! began; a header that does not fit is told why in a bounded message.
//!
//! Why not polars' CSV reader: it reports neither physical line numbers nor ragged rows, and reads
//! UTF-8 only. The `csv` crate streams records with their line numbers; chunks become polars
//! string columns without a per-value allocation.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, IoContext, PolarsContext, Rejection, Result};
use crate::quarantine::{Issue, Rule};
use crate::spec::schema::{Field, FieldType, FieldsMatch, TableSchema, TimeOfDay};
use crate::spec::{Encoding, Format, SourcePlan};

// Unsafe code: calls into ReadStat's C API (see its doc); the other place is the Arrow C Data
// Interface of the distributed engine (`engine::ballista::import`).
#[cfg(feature = "readstat")]
#[allow(unsafe_code)]
mod statfile;
#[cfg(feature = "readstat")]
pub use statfile::{StatChunks, ValueLabels};
/// The value labels of one file (SPSS, Stata): field name → delivered value → label.
#[cfg(not(feature = "readstat"))]
pub type ValueLabels =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// A bounded slice of one file, as text, in schema field order.
pub struct RawChunk {
    pub file_index: usize,
    /// One column per schema field; a ragged row holds nulls.
    pub columns: Vec<StringChunked>,
    /// Physical line on which each record starts (CSV only).
    pub lines: Option<Vec<u64>>,
    /// 1-based record number of the chunk's first row within its file (Parquet row index + 1).
    pub first_record: u64,
    /// Rows whose structure is broken: they are quarantined without further checks.
    pub broken: Vec<bool>,
    /// Problems found while reading (ragged rows, invalid encoding), by chunk row.
    pub issues: Vec<Issue>,
    /// The file's value labels (SPSS and Stata files), for derivations that map through them.
    pub labels: Option<std::sync::Arc<ValueLabels>>,
}

impl RawChunk {
    pub fn height(&self) -> usize {
        self.broken.len()
    }

    pub fn line(&self, row: usize) -> Option<u64> {
        self.lines.as_ref().map(|l| l[row])
    }
}

/// Reads one file chunk by chunk.
pub enum FileChunks {
    Csv(Box<CsvChunks>),
    Parquet(ParquetChunks),
    #[cfg(feature = "excel")]
    Excel(Box<ExcelChunks>),
    #[cfg(feature = "readstat")]
    Stat(Box<StatChunks>),
}

impl FileChunks {
    /// Open a file of a source and check its header against the schema. A header that does not
    /// fit is a [`Rejection`] of the source: no row of such a file can be read correctly.
    ///
    /// `expected` is the file's size and blake3 when the run began (what the manifest records
    /// and incremental reuse compares): once the file has been read, the bytes actually read
    /// must have them, or the source is rejected — a delivery truncated or rewritten during the
    /// run is never published under the old file's identity.
    pub fn open(
        src: &SourcePlan,
        file_index: usize,
        chunk_rows: usize,
        expected: (u64, String),
    ) -> Result<Self> {
        let path = &src.files[file_index];
        // Parquet and workbook readers can panic on a damaged file: an error naming it instead.
        crate::error::guard_reader(path, || match src.format {
            Format::Csv => Ok(FileChunks::Csv(Box::new(CsvChunks::open(
                src, file_index, chunk_rows, expected,
            )?))),
            #[cfg(feature = "excel")]
            Format::Excel => Ok(FileChunks::Excel(Box::new(ExcelChunks::open(
                src, file_index, chunk_rows, expected,
            )?))),
            #[cfg(not(feature = "excel"))]
            Format::Excel => Err(Error::Usage(format!(
                "source `{}`: this migstat was built without the `excel` feature",
                src.id
            ))),
            #[cfg(feature = "readstat")]
            Format::Spss | Format::Stata => Ok(FileChunks::Stat(Box::new(StatChunks::open(
                src, file_index, chunk_rows, expected,
            )?))),
            #[cfg(not(feature = "readstat"))]
            Format::Spss | Format::Stata => Err(Error::Usage(format!(
                "source `{}`: this migstat was built without the `readstat` feature",
                src.id
            ))),
            Format::Parquet => {
                let mut reader = ParquetReader::new(File::open(path).at(path)?);
                let rows = reader
                    .num_rows()
                    .ctx(|| format!("reading Parquet metadata of {}", path.display()))?;
                let arrow_schema = reader
                    .schema()
                    .ctx(|| format!("reading the schema of {}", path.display()))?;
                let names: Vec<String> = arrow_schema.iter_names().map(|n| n.to_string()).collect();
                let map = map_header(&names, &src.schema, &src.id, path, None)?;
                let selected: Vec<String> = map.iter().map(|&i| names[i].clone()).collect();
                let mut unfit = Vec::new();
                for (name, field) in selected.iter().zip(&src.schema.fields) {
                    let dtype = arrow_schema
                        .get(name.as_str())
                        .map(|f| DataType::from_arrow_dtype(f.dtype()))
                        .unwrap_or(DataType::Null);
                    if let Some(why) = parquet_unfit(&dtype, field) {
                        unfit.push(format!("column `{name}` {why}"));
                    }
                }
                if !unfit.is_empty() {
                    return Err(Error::Rejected(vec![Rejection::new(
                        src.id.as_str(),
                        format!(
                            "{}: the Parquet types do not fit the schema: {}",
                            path.display(),
                            unfit.join("; ")
                        ),
                    )]));
                }
                Ok(FileChunks::Parquet(ParquetChunks {
                    source_id: src.id.clone(),
                    expected,
                    path: path.clone(),
                    file_index,
                    rows: rows as u64,
                    offset: 0,
                    chunk_rows,
                    selected,
                    schema: src.schema.clone(),
                }))
            }
        })
    }

    pub fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        match self {
            FileChunks::Csv(c) => c.next_chunk(),
            FileChunks::Parquet(p) => p.next_chunk(),
            #[cfg(feature = "excel")]
            FileChunks::Excel(x) => x.next_chunk(),
            #[cfg(feature = "readstat")]
            FileChunks::Stat(x) => x.next_chunk(),
        }
    }

    /// Bytes consumed so far (CSV) — for the progress bar.
    pub fn position(&self) -> u64 {
        match self {
            FileChunks::Csv(c) => c.reader.position().byte(),
            FileChunks::Parquet(_) => 0,
            #[cfg(feature = "excel")]
            FileChunks::Excel(_) => 0,
            #[cfg(feature = "readstat")]
            FileChunks::Stat(_) => 0,
        }
    }
}

/// For each schema field, the index of the file column that holds it.
///
/// A header that does not fit rejects the source. The message quotes the file's labels
/// (bounded: a file without line breaks is one huge "label") and names the usual causes: a
/// label given twice, an empty label after a trailing delimiter, and what `sniffed` saw in the
/// file's first bytes.
fn map_header(
    header: &[String],
    schema: &TableSchema,
    source_id: &str,
    path: &Path,
    sniffed: Option<&str>,
) -> Result<Vec<usize>> {
    use crate::error::{quote, quote_list};
    let expected: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    let found: Vec<&str> = header.iter().map(String::as_str).collect();
    let reject = |detail: String| {
        let hint = sniffed.map(|h| format!(" ({h})")).unwrap_or_default();
        Error::Rejected(vec![Rejection::new(
            source_id,
            format!(
                "{}: the header does not match the schema: {detail}{hint}; expected columns: {}",
                path.display(),
                quote_list(expected.iter().copied())
            ),
        )])
    };
    let mut problems = Vec::new();
    let mut twice: Vec<&str> = Vec::new();
    for (i, f) in found.iter().enumerate() {
        if !f.is_empty() && found[..i].contains(f) && !twice.contains(f) {
            twice.push(f);
        }
    }
    for f in &twice {
        problems.push(format!("column {} appears twice", quote(f)));
    }
    let empty: Vec<usize> = (0..found.len()).filter(|&i| found[i].is_empty()).collect();
    if let Some(&i) = empty.last() {
        problems.push(if i + 1 == found.len() && empty.len() == 1 {
            "an empty column name after a trailing delimiter".to_string()
        } else {
            format!(
                "{} column(s) without a name (the first is column {})",
                empty.len(),
                empty[0] + 1
            )
        });
    }
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|e| !found.contains(e))
        .collect();
    let extra: Vec<&str> = found
        .iter()
        .copied()
        .filter(|f| !f.is_empty() && !expected.contains(f))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("missing: {}", quote_list(missing.iter().copied())));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "not in the schema: {}",
            quote_list(extra.iter().copied())
        ));
    }
    if !problems.is_empty() {
        return Err(reject(problems.join("; ")));
    }
    if schema.fields_match == FieldsMatch::Exact && found != expected {
        return Err(reject(format!(
            "columns are in another order: {} (the schema's fieldsMatch is \"exact\"; use \"equal\" to match by name)",
            quote_list(found.iter().copied())
        )));
    }
    Ok(expected
        .iter()
        .map(|e| found.iter().position(|f| f == e).unwrap_or_default())
        .collect())
}

/// What the first bytes of a delimited-text file say about it, when that is not text in lines:
/// an archive or UTF-16 is refused at once (`Err`); a file without a line break in its first
/// MiB, or with NUL bytes, gets a hint for the header message (`Ok(Some)`).
fn sniff(head: &[u8], whole_file: bool) -> std::result::Result<Option<&'static str>, &'static str> {
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err("looks like gzip: decompress it first (gunzip), then name the .csv");
    }
    if head.starts_with(b"PK\x03\x04") {
        return Err(
            "looks like a ZIP archive (an .xlsx workbook is one): unpack it, or export the sheet as CSV",
        );
    }
    if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
        return Err(
            "looks like UTF-16 (it starts with a UTF-16 byte-order mark): save it as UTF-8",
        );
    }
    if head.contains(&0) {
        return Ok(Some(
            "NUL bytes in the first MiB: a binary file, or UTF-16 without a byte-order mark?",
        ));
    }
    if !head.contains(&b'\n') && !head.is_empty() {
        return Ok(Some(if head.contains(&b'\r') {
            "no line break (LF) found in the first MiB but carriage returns are: CR-only line endings? declare them: [sources.<id>.dialect] line_terminator = \"\\r\""
        } else if whole_file {
            "the file has no line break: a header alone, or not text?"
        } else {
            "no line break found in the first MiB: binary? one very long line?"
        }));
    }
    Ok(None)
}

pub struct CsvChunks {
    /// Spaces after a delimiter are dropped (the dialect's `skip_initial_space`).
    skip_initial_space: bool,
    source_id: String,
    /// (bytes, blake3) of the file when the run began; checked against what was read.
    expected: (u64, String),
    /// The bytes read from the file so far, hashed as they pass.
    read: std::sync::Arc<std::sync::Mutex<(blake3::Hasher, u64)>>,
    path: PathBuf,
    reader: csv::Reader<Tail<Box<dyn Read + Send>>>,
    file_index: usize,
    delimiter: u8,
    chunk_rows: usize,
    /// Schema field index → file column index.
    map: Vec<usize>,
    n_columns: usize,
    names: Vec<String>,
    record: csv::ByteRecord,
    records_read: u64,
    done: bool,
}

impl CsvChunks {
    fn open(
        src: &SourcePlan,
        file_index: usize,
        chunk_rows: usize,
        expected: (u64, String),
    ) -> Result<Self> {
        let path = &src.files[file_index];
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        let read = std::sync::Arc::new(std::sync::Mutex::new((blake3::Hasher::new(), 0u64)));
        let file = Hashed {
            inner: file,
            state: read.clone(),
        };
        let mut file = BufReader::with_capacity(1 << 20, file);
        let head = file.fill_buf().at(path)?;
        let sniffed = sniff(head, head.len() as u64 == len).map_err(|why| {
            Error::Rejected(vec![Rejection::new(
                src.id.as_str(),
                format!("{}: {why}", path.display()),
            )])
        })?;
        let input: Box<dyn Read + Send> = match src.encoding {
            Encoding::Utf8 => Box::new(SkipUtf8Bom::new(file)),
            Encoding::Windows1252 => Box::new(BufReader::with_capacity(
                1 << 20,
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding_rs::WINDOWS_1252))
                    .build(file),
            )),
        };
        // A file whose lines end at `\r` alone is read as if they ended at `\n` (so that lines
        // are counted): every `\r` becomes `\n`, those inside quoted values too.
        let input: Box<dyn Read + Send> = if src.dialect.cr_only {
            Box::new(CrAsLf(input))
        } else {
            input
        };
        let d = &src.dialect;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(src.delimiter)
            .has_headers(true)
            .flexible(true)
            // Records end at `\n` and a trailing `\r` is stripped below: the csv crate's CRLF mode
            // counts the `\n` of a CRLF in the next record, one line too early.
            .terminator(csv::Terminator::Any(b'\n'))
            .quoting(d.quote.is_some())
            .quote(d.quote.unwrap_or(b'"'))
            .double_quote(d.double_quote)
            .escape(d.escape)
            .comment(d.comment)
            .buffer_capacity(1 << 20)
            .from_reader(Tail::new(input));
        let header: Vec<String> = match reader.byte_headers() {
            Ok(h) if !is_blank(h) => h
                .iter()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .collect(),
            Ok(_) => {
                return Err(Error::Rejected(vec![Rejection::new(
                    src.id.as_str(),
                    format!("{}: the file is empty (no header row)", path.display()),
                )]));
            }
            Err(e) => return Err(csv_error(e, path)),
        };
        let map = map_header(&header, &src.schema, &src.id, path, sniffed)?;
        Ok(CsvChunks {
            skip_initial_space: d.skip_initial_space,
            source_id: src.id.clone(),
            expected,
            read,
            path: path.clone(),
            reader,
            file_index,
            delimiter: src.delimiter,
            chunk_rows,
            map,
            n_columns: header.len(),
            names: src.schema.fields.iter().map(|f| f.name.clone()).collect(),
            record: csv::ByteRecord::new(),
            records_read: 0,
            done: false,
        })
    }

    fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        if self.done {
            return Ok(None);
        }
        let cap = self.chunk_rows.min(1 << 16);
        let mut builders: Vec<StringChunkedBuilder> = self
            .names
            .iter()
            .map(|n| StringChunkedBuilder::new(n.as_str().into(), cap))
            .collect();
        let mut lines = Vec::with_capacity(cap);
        let mut broken = Vec::with_capacity(cap);
        let mut issues = Vec::new();
        let first_record = self.records_read + 1;
        let mut scratch = String::new();
        while lines.len() < self.chunk_rows {
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| csv_error(e, &self.path))?;
            if !more {
                self.done = true;
                let (hasher, bytes) = &*self.read.lock().map_err(|_| {
                    Error::Internal("the hashing reader's lock was poisoned".into())
                })?;
                unchanged(
                    &self.source_id,
                    &self.path,
                    &self.expected,
                    (*bytes, hasher.finalize().to_hex().to_string()),
                )?;
                break;
            }
            if is_blank(&self.record) {
                // An empty line is not a record (as in RFC 4180 readers and Frictionless).
                continue;
            }
            self.records_read += 1;
            let row = lines.len() as u32;
            lines.push(self.first_line());
            if self.record.len() != self.n_columns {
                for b in &mut builders {
                    b.append_null();
                }
                broken.push(true);
                let n = self.record.len();
                let raw = self
                    .record
                    .iter()
                    .enumerate()
                    .map(|(i, f)| String::from_utf8_lossy(strip_cr(f, i + 1 == n)))
                    .collect::<Vec<_>>()
                    .join(&(self.delimiter as char).to_string());
                issues.push(Issue {
                    row,
                    field: None,
                    rule: Rule::RaggedRow,
                    raw: Some(raw),
                    message: format!(
                        "the record has {} fields, the header has {}",
                        self.record.len(),
                        self.n_columns
                    ),
                });
                continue;
            }
            broken.push(false);
            let last = self.n_columns - 1;
            // The record's bytes checked as UTF-8 once, not field by field (a call per field
            // was 2% of the pass); a field whose bounds do not fall on characters, or a record
            // that is not UTF-8, takes the field-by-field path, which says which field is bad.
            let whole = std::str::from_utf8(self.record.as_slice()).ok();
            for (fi, b) in builders.iter_mut().enumerate() {
                let col = self.map[fi];
                if let Some(mut text) =
                    whole.and_then(|w| self.record.range(col).and_then(|r| w.get(r)))
                {
                    if col == last {
                        text = text.strip_suffix('\r').unwrap_or(text);
                    }
                    if self.skip_initial_space {
                        text = text.trim_ascii_start();
                    }
                    b.append_value(text);
                    continue;
                }
                let mut bytes = strip_cr(&self.record[col], col == last);
                if self.skip_initial_space {
                    bytes = bytes.trim_ascii_start();
                }
                match std::str::from_utf8(bytes) {
                    Ok(s) => b.append_value(s),
                    Err(_) => {
                        scratch.clear();
                        scratch.push_str(&String::from_utf8_lossy(bytes));
                        b.append_value(&scratch);
                        issues.push(Issue {
                            row,
                            field: Some(fi),
                            rule: Rule::InvalidEncoding,
                            raw: Some(scratch.clone()),
                            message: "bytes that are not valid UTF-8 (is the file really utf-8? set `encoding` in the spec)".into(),
                        });
                    }
                }
            }
        }
        if lines.is_empty() {
            return Ok(None);
        }
        Ok(Some(RawChunk {
            file_index: self.file_index,
            columns: builders.into_iter().map(|b| b.finish()).collect(),
            lines: Some(lines),
            first_record,
            broken,
            issues,
            labels: None,
        }))
    }
}

impl CsvChunks {
    /// The physical line on which the record just read starts.
    ///
    /// The csv crate dates a record from where its read began, which is before the empty lines
    /// it skips: a record after blank lines would be placed on the first of them. Counted back
    /// from where the record ends instead: the line after it, less the line breaks inside its
    /// quoted fields, less its own terminator (absent only on a last line without one).
    fn first_line(&self) -> u64 {
        let end = self.reader.position();
        let tail = self.reader.get_ref();
        let at_end = tail.eof && end.byte() == tail.total;
        let terminated = !at_end || tail.last == Some(b'\n');
        let inside = self
            .record
            .as_slice()
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        end.line()
            .saturating_sub(inside)
            .saturating_sub(u64::from(terminated))
            .max(1)
    }
}

/// A byte stream with every `\r` turned into `\n`: CR-only line ends read as LF ones.
struct CrAsLf<R>(R);

impl<R: Read> Read for CrAsLf<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        for b in &mut buf[..n] {
            if *b == b'\r' {
                *b = b'\n';
            }
        }
        Ok(n)
    }
}

/// A byte stream that remembers how many bytes it delivered, the last one, and whether it has
/// ended: what the CSV reader needs to tell a last record without a line break from one with.
struct Tail<R> {
    inner: R,
    total: u64,
    last: Option<u8>,
    eof: bool,
}

impl<R> Tail<R> {
    fn new(inner: R) -> Self {
        Tail {
            inner,
            total: 0,
            last: None,
            eof: false,
        }
    }
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.eof = !buf.is_empty();
        } else {
            self.total += n as u64;
            self.last = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

/// A file read whole must still be the file the run began with (size and blake3).
fn unchanged(
    source_id: &str,
    path: &Path,
    expected: &(u64, String),
    read: (u64, String),
) -> Result<()> {
    if *expected == read {
        return Ok(());
    }
    Err(Error::Rejected(vec![Rejection::new(
        source_id,
        format!(
            "{}: the file changed while it was read ({} bytes, blake3 {}… when the run began; {} bytes, blake3 {}… as read): nothing of it is published; rerun once the delivery is complete",
            path.display(),
            expected.0,
            expected.1.get(..16).unwrap_or_default(),
            read.0,
            read.1.get(..16).unwrap_or_default()
        ),
    )]))
}

/// A file's bytes hashed (blake3) and counted as they are read.
struct Hashed<R> {
    inner: R,
    state: std::sync::Arc<std::sync::Mutex<(blake3::Hasher, u64)>>,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("hashing state poisoned"))?;
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
}

/// The `\r` of a CRLF line end, left on the last field by the `\n` terminator.
fn strip_cr(field: &[u8], is_last: bool) -> &[u8] {
    match field {
        [rest @ .., b'\r'] if is_last => rest,
        _ => field,
    }
}

/// A record that is only a line end (`\n` or `\r\n`).
fn is_blank(r: &csv::ByteRecord) -> bool {
    r.is_empty() || (r.len() == 1 && (r[0].is_empty() || &r[0] == b"\r"))
}

fn csv_error(e: csv::Error, path: &Path) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        other => Error::Internal(format!("CSV reader error on {}: {other:?}", path.display())),
    }
}

/// Passes a byte stream through, dropping a leading UTF-8 byte-order mark.
struct SkipUtf8Bom<R> {
    inner: R,
    checked: bool,
}

impl<R: Read> SkipUtf8Bom<R> {
    fn new(inner: R) -> Self {
        SkipUtf8Bom {
            inner,
            checked: false,
        }
    }
}

impl<R: Read> Read for SkipUtf8Bom<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.checked {
            return self.inner.read(buf);
        }
        self.checked = true;
        let mut head = [0u8; 3];
        let mut n = 0;
        while n < 3 {
            let k = self.inner.read(&mut head[n..])?;
            if k == 0 {
                break;
            }
            n += k;
        }
        let start = if head[..n] == [0xEF, 0xBB, 0xBF] {
            3
        } else {
            0
        };
        let rest = &head[start..n];
        if rest.is_empty() {
            return self.inner.read(buf);
        }
        if rest.len() <= buf.len() {
            buf[..rest.len()].copy_from_slice(rest);
            Ok(rest.len())
        } else {
            // A caller's buffer under 3 bytes: hand the head over in pieces.
            Err(std::io::Error::other(
                "read buffer too small for the BOM check",
            ))
        }
    }
}

pub struct ParquetChunks {
    source_id: String,
    /// (bytes, blake3) of the file when the run began; checked once it is read.
    expected: (u64, String),
    path: PathBuf,
    file_index: usize,
    rows: u64,
    offset: u64,
    chunk_rows: usize,
    /// File column names, in schema field order.
    selected: Vec<String>,
    schema: TableSchema,
}

impl ParquetChunks {
    fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        if self.offset >= self.rows {
            if self.rows != u64::MAX {
                // Read in slices, each opening the file: hashed again once all are read.
                let now = crate::manifest::hash_file(&self.path)?;
                unchanged(&self.source_id, &self.path, &self.expected, now)?;
                self.rows = u64::MAX;
                self.offset = u64::MAX;
            }
            return Ok(None);
        }
        let len = (self.rows - self.offset).min(self.chunk_rows as u64) as usize;
        let path = &self.path;
        let df = crate::error::guard_reader(path, || {
            ParquetReader::new(File::open(path).at(path)?)
                .with_columns(Some(self.selected.clone()))
                .with_slice(Some((self.offset as usize, len)))
                .finish()
                .ctx(|| format!("reading rows {}.. of {}", self.offset, path.display()))
        })?;
        let height = df.height();
        let mut columns = Vec::with_capacity(self.selected.len());
        let mut broken = vec![false; height];
        let mut issues = Vec::new();
        for (fi, (name, field)) in self.selected.iter().zip(&self.schema.fields).enumerate() {
            let s = df
                .column(name)
                .ctx(|| format!("reading column {name} of {}", path.display()))?
                .as_materialized_series();
            let ca = parquet_text(s, field, fi, &mut issues)
                .ctx(|| format!("reading column {name} of {} as text", path.display()))?
                .with_name(field.name.as_str().into());
            columns.push(ca);
        }
        for i in &issues {
            broken[i.row as usize] = true;
        }
        issues.sort_by_key(|i| (i.row, i.field));
        let first_record = self.offset + 1;
        self.offset += height as u64;
        Ok(Some(RawChunk {
            file_index: self.file_index,
            columns,
            lines: None,
            first_record,
            broken,
            issues,
            labels: None,
        }))
    }
}

/// Reads one worksheet of an Excel (or OpenDocument) workbook. calamine holds the sheet in
/// memory (a workbook is small next to a register's CSV); rows are handed out in chunks. A
/// record's `line` is its row number on the sheet, so `sheet!A12` locates a cell.
#[cfg(feature = "excel")]
pub struct ExcelChunks {
    file_index: usize,
    sheet: String,
    range: calamine::Range<calamine::Data>,
    /// Index in `range` of the next row to read.
    next: usize,
    /// The sheet's (0-based) row and column of the range's first cell.
    origin: (u32, u32),
    map: Vec<usize>,
    n_columns: usize,
    fields: Vec<Field>,
    chunk_rows: usize,
    records_read: u64,
}

#[cfg(feature = "excel")]
impl ExcelChunks {
    fn open(
        src: &SourcePlan,
        file_index: usize,
        chunk_rows: usize,
        expected: (u64, String),
    ) -> Result<Self> {
        use calamine::Reader;
        let path = &src.files[file_index];
        let reject = |why: String| {
            Error::Rejected(vec![Rejection::new(
                src.id.as_str(),
                format!("{}: {why}", path.display()),
            )])
        };
        let mut wb = calamine::open_workbook_auto(path)
            .map_err(|e| reject(format!("cannot read the workbook: {e}")))?;
        let names = wb.sheet_names();
        let sheet = match &src.sheet {
            Some(s) if names.contains(s) => s.clone(),
            Some(s) => {
                return Err(reject(format!(
                    "no sheet {} (sheets: {})",
                    crate::error::quote(s),
                    crate::error::quote_list(names.iter().map(String::as_str))
                )));
            }
            None => names
                .first()
                .cloned()
                .ok_or_else(|| reject("the workbook has no sheet".into()))?,
        };
        let range = wb.worksheet_range(&sheet).map_err(|e| {
            reject(format!(
                "cannot read sheet {}: {e}",
                crate::error::quote(&sheet)
            ))
        })?;
        // The workbook is read whole here: it must still be the file the run began with.
        unchanged(&src.id, path, &expected, crate::manifest::hash_file(path)?)?;
        let origin = range.start().unwrap_or((0, 0));
        let header_at = (src.header_row - 1)
            .checked_sub(origin.0)
            .map(|r| r as usize);
        let header: Vec<String> = match header_at.and_then(|r| range.rows().nth(r)) {
            Some(cells) => cells
                .iter()
                .map(|c| c.to_string().trim().to_string())
                .collect(),
            None => {
                return Err(reject(format!(
                    "row {} of sheet {} (the header row) is empty",
                    src.header_row,
                    crate::error::quote(&sheet)
                )));
            }
        };
        // Formatting often stretches a sheet's range past its last column: empty header cells
        // at the end are not columns.
        let width = header
            .iter()
            .rposition(|h| !h.is_empty())
            .map_or(0, |i| i + 1);
        let header = &header[..width];
        let map = map_header(header, &src.schema, &src.id, path, None)?;
        Ok(ExcelChunks {
            file_index,
            sheet,
            range,
            next: header_at.unwrap_or_default() + 1,
            origin,
            map,
            n_columns: width,
            fields: src.schema.fields.clone(),
            chunk_rows,
            records_read: 0,
        })
    }

    fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        use calamine::Data;
        let cap = self.chunk_rows.min(1 << 16);
        let mut columns: Vec<Vec<Option<String>>> =
            vec![Vec::with_capacity(cap); self.fields.len()];
        let mut lines = Vec::with_capacity(cap);
        let mut broken = Vec::with_capacity(cap);
        let mut issues = Vec::new();
        let first_record = self.records_read + 1;
        // One walk over the sheet's rows per chunk (calamine's row iterator steps one row at a
        // time: finding each row from the top would be quadratic in the sheet's height).
        let mut rows = self.range.rows().skip(self.next);
        while lines.len() < self.chunk_rows {
            let Some(cells) = rows.next() else {
                break;
            };
            let i = self.next;
            self.next += 1;
            if cells.iter().all(|c| matches!(c, Data::Empty)) {
                continue; // an empty row is not a record
            }
            self.records_read += 1;
            let row = lines.len();
            let sheet_row = u64::from(self.origin.0) + i as u64 + 1;
            lines.push(sheet_row);
            let mut bad = false;
            if cells[self.n_columns.min(cells.len())..]
                .iter()
                .any(|c| !matches!(c, Data::Empty))
            {
                bad = true;
                issues.push(Issue {
                    row: row as u32,
                    field: None,
                    rule: Rule::RaggedRow,
                    raw: None,
                    message: format!(
                        "row {sheet_row} of sheet {} has values right of the header's last column",
                        crate::error::quote(&self.sheet)
                    ),
                });
            }
            for (fi, field) in self.fields.iter().enumerate() {
                let col = self.map[fi];
                let cell = cells.get(col).unwrap_or(&Data::Empty);
                let at = format!(
                    "{}!{}{sheet_row}",
                    self.sheet,
                    column_letters(self.origin.1 + col as u32)
                );
                let value = excel_text(cell, field).unwrap_or_else(|why| {
                    bad = true;
                    issues.push(Issue {
                        row: row as u32,
                        field: Some(fi),
                        rule: Rule::Type,
                        raw: Some(cell.to_string()),
                        message: format!("{why} (Excel cell {})", crate::error::cap_bytes(&at, 96)),
                    });
                    None
                });
                columns[fi].push(value);
            }
            broken.push(bad);
        }
        if lines.is_empty() {
            return Ok(None);
        }
        Ok(Some(RawChunk {
            file_index: self.file_index,
            columns: self
                .fields
                .iter()
                .zip(columns)
                .map(|(f, c)| {
                    StringChunked::from_iter_options(f.name.as_str().into(), c.into_iter())
                })
                .collect(),
            lines: Some(lines),
            first_record,
            broken,
            issues,
            labels: None,
        }))
    }
}

/// A cell as the text validation reads for `field`: numbers that are whole as integers, Excel
/// dates in the field's first date format (a time of day other than midnight is an error unless
/// the field says `"time": "drop"`), booleans as the field's first true/false value, an error
/// cell (`#DIV/0!`) as an error.
#[cfg(feature = "excel")]
fn excel_text(cell: &calamine::Data, field: &Field) -> std::result::Result<Option<String>, String> {
    use calamine::Data;
    let whole = |f: f64| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0;
    let dated = |dt: chrono::NaiveDateTime, shown: String| date_time_text(dt, &shown, field);
    match cell {
        Data::Empty => Ok(None),
        Data::String(s) => Ok(Some(s.clone())),
        Data::Int(i) => Ok(Some(i.to_string())),
        Data::Float(f) if whole(*f) => Ok(Some((*f as i64).to_string())),
        Data::Float(f) => Ok(Some(f.to_string())),
        Data::Bool(b) => Ok(Some(match (&field.field_type, b) {
            (FieldType::Boolean, true) => {
                field.true_values.first().cloned().unwrap_or("true".into())
            }
            (FieldType::Boolean, false) => field
                .false_values
                .first()
                .cloned()
                .unwrap_or("false".into()),
            (_, b) => b.to_string(),
        })),
        Data::DateTime(d) => match d.as_datetime() {
            Some(dt) => dated(dt, dt.to_string()),
            None => Err(format!(
                "{} is not a date Excel can place",
                crate::error::quote(&cell.to_string())
            )),
        },
        Data::DateTimeIso(s) => {
            let parsed = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .or_else(|| {
                    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .map(|d| d.and_time(chrono::NaiveTime::MIN))
                });
            match parsed {
                Some(dt) => dated(dt, s.clone()),
                None => Ok(Some(s.clone())),
            }
        }
        Data::DurationIso(s) => Ok(Some(s.clone())),
        Data::Error(e) => Err(format!("the cell holds the error {e}")),
    }
}

/// A date and time a typed cell holds (Excel, SPSS, Stata) as the text validation reads for
/// `field`: in a date field, the date in the field's first format (a time of day other than
/// midnight is an error unless the field says `"time": "drop"`); elsewhere ISO 8601, the time
/// left out at midnight.
#[cfg(any(feature = "excel", feature = "readstat"))]
fn date_time_text(
    dt: chrono::NaiveDateTime,
    shown: &str,
    field: &Field,
) -> std::result::Result<Option<String>, String> {
    match &field.field_type {
        FieldType::Date(dates) => {
            if dt.time() != chrono::NaiveTime::MIN && dates.time != TimeOfDay::Drop {
                Err(format!(
                    "{} has a time of day; the field reads dates (`\"time\": \"drop\"` keeps the date part)",
                    crate::error::quote(shown)
                ))
            } else {
                Ok(Some(dates.formats[0].write(dt.date(), (true, true))))
            }
        }
        _ if dt.time() == chrono::NaiveTime::MIN => Ok(Some(dt.date().to_string())),
        _ => Ok(Some(dt.to_string())),
    }
}

/// Spreadsheet column letters of a 0-based column index: 0 → A, 25 → Z, 26 → AA.
#[cfg(feature = "excel")]
fn column_letters(mut c: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Why a Parquet column of type `dtype` cannot hold `field`, if it cannot. The physical types
/// pandas, polars, R arrow and DuckDB write are accepted for each Table Schema type: text for
/// anything; integers for integer, year and number fields; floats and decimals for numbers and,
/// when integral, integers and years; dates and timestamps (without a time zone) for dates;
/// booleans for booleans.
fn parquet_unfit(dtype: &DataType, field: &Field) -> Option<String> {
    let fits = match dtype {
        DataType::String | DataType::Categorical(..) | DataType::Enum(..) | DataType::Null => true,
        _ if field.field_type == FieldType::String => {
            dtype.is_primitive_numeric()
                || matches!(
                    dtype,
                    DataType::Boolean | DataType::Date | DataType::Datetime(_, None)
                )
        }
        DataType::Datetime(_, Some(tz)) => {
            return Some(format!(
                "holds timestamps in time zone {tz}: deliver dates, or timestamps without a time zone (their local date is not defined here)"
            ));
        }
        d if d.is_integer() => matches!(
            field.field_type,
            FieldType::Integer | FieldType::Year | FieldType::Number
        ),
        d if d.is_float() || matches!(d, DataType::Decimal(..)) => matches!(
            field.field_type,
            FieldType::Integer | FieldType::Year | FieldType::Number
        ),
        DataType::Boolean => field.field_type == FieldType::Boolean,
        DataType::Date | DataType::Datetime(_, None) => {
            matches!(field.field_type, FieldType::Date(_))
        }
        _ => false,
    };
    (!fits).then(|| {
        format!(
            "is of Parquet/Arrow type {dtype}, which cannot hold the schema's {} field `{}`",
            field.field_type.name(),
            field.name
        )
    })
}

/// A Parquet column as the text validation reads, whatever physical type it was written with:
/// dates and timestamps in the field's first format, integral floats and decimals as integers,
/// booleans as the field's first true/false value, anything else as polars writes it. A value
/// that cannot be the field's (a float with a fraction for an integer, a time of day where the
/// field's `time` wants midnight) becomes an issue naming the Parquet type, and its row broken.
fn parquet_text(
    s: &Series,
    field: &Field,
    fi: usize,
    issues: &mut Vec<Issue>,
) -> PolarsResult<StringChunked> {
    let dtype = s.dtype().clone();
    let mut issue = |row: usize, raw: String, message: String| {
        issues.push(Issue {
            row: row as u32,
            field: Some(fi),
            rule: Rule::Type,
            raw: Some(raw),
            message: format!("{message} (Parquet column of type {dtype})"),
        })
    };
    let out: StringChunked = match (s.dtype(), &field.field_type) {
        (DataType::Date, FieldType::Date(dates)) => {
            let days = s.to_physical_repr();
            days.i32()?
                .iter()
                .map(|d| {
                    d.and_then(crate::calendar::date_of_days)
                        .map(|d| dates.formats[0].write(d, (true, true)))
                })
                .collect()
        }
        (DataType::Datetime(unit, _), FieldType::Date(dates)) => {
            let per_day: i64 = match unit {
                TimeUnit::Nanoseconds => 86_400_000_000_000,
                TimeUnit::Microseconds => 86_400_000_000,
                TimeUnit::Milliseconds => 86_400_000,
            };
            let phys = s.to_physical_repr();
            let texts = s.cast(&DataType::String)?;
            let texts = texts.str()?;
            phys.i64()?
                .iter()
                .enumerate()
                .map(|(row, t)| {
                    let t = t?;
                    let (days, within) = (t.div_euclid(per_day), t.rem_euclid(per_day));
                    let day = i32::try_from(days).ok().and_then(crate::calendar::date_of_days)?;
                    if within != 0 && dates.time != TimeOfDay::Drop {
                        let raw = texts.get(row).unwrap_or_default().to_string();
                        issue(
                            row,
                            raw.clone(),
                            format!(
                                "{} has a time of day; the field reads dates (`\"time\": \"drop\"` keeps the date part)",
                                crate::error::quote(&raw)
                            ),
                        );
                        return None;
                    }
                    Some(dates.formats[0].write(day, (true, true)))
                })
                .collect()
        }
        (d, FieldType::Integer | FieldType::Year)
            if d.is_float() || matches!(d, DataType::Decimal(..)) =>
        {
            let year = field.field_type == FieldType::Year;
            let floats = s.cast(&DataType::Float64)?;
            let texts = s.cast(&DataType::String)?;
            let texts = texts.str()?;
            floats
                .f64()?
                .iter()
                .enumerate()
                .map(|(row, x)| {
                    let x = x?;
                    // Integral and exactly representable: pandas writes a missing value's
                    // integer column as float64.
                    if x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0 {
                        let i = x as i64;
                        return Some(if year {
                            format!("{i:04}")
                        } else {
                            i.to_string()
                        });
                    }
                    let raw = texts.get(row).unwrap_or_default().to_string();
                    issue(
                        row,
                        raw.clone(),
                        format!(
                            "{} is not {}",
                            crate::error::quote(&raw),
                            if year { "a year" } else { "an integer" }
                        ),
                    );
                    None
                })
                .collect()
        }
        (DataType::Boolean, FieldType::Boolean) => {
            let t = field.true_values.first().map_or("true", String::as_str);
            let f = field.false_values.first().map_or("false", String::as_str);
            s.bool()?
                .iter()
                .map(|b| b.map(|b| if b { t } else { f }))
                .collect()
        }
        _ => s.cast(&DataType::String)?.str()?.clone(),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "excel")]
    #[test]
    fn column_letters_count_as_spreadsheets_do() {
        // By hand: A..Z, then AA (26), AZ (51), BA (52), ZZ (701), AAA (702).
        for (c, want) in [
            (0, "A"),
            (25, "Z"),
            (26, "AA"),
            (51, "AZ"),
            (52, "BA"),
            (701, "ZZ"),
            (702, "AAA"),
        ] {
            assert_eq!(column_letters(c), want);
        }
    }

    #[test]
    fn bom_is_skipped_once() {
        let data = b"\xEF\xBB\xBFa,b\n\xEF\xBB\xBF";
        let mut out = Vec::new();
        SkipUtf8Bom::new(&data[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"a,b\n\xEF\xBB\xBF");
        let mut out = Vec::new();
        SkipUtf8Bom::new(&b"ab"[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
        // A BOM alone in the first read must not look like the end of the file.
        let mut out = Vec::new();
        SkipUtf8Bom::new(std::io::Read::chain(&b"\xEF\xBB\xBF"[..], &b"x,y\n"[..]))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"x,y\n");
    }
}
