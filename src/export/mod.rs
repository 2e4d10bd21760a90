//! Export: writes frames to Parquet files, deterministically and in bounded memory, and the
//! documents that come with a release.
//!
//! Input: a stream of polars frames of one schema (accepted records, quarantine rows).
//! Output: one zstd-compressed Parquet file with column statistics and key-value metadata, and
//! its [`OutputFile`] record (path, rows, bytes, blake3) for the manifest. [`documents`] then
//! describes the protected public tables of a release: [`codebook`] (Markdown and a Frictionless
//! Data Package), [`sdmx`] (SDMX-CSV and SDMX-ML structures) and [`report`] (the HTML report).
//!
//! Frames are buffered up to a row-group size and handed, full, to the sink's own writer thread,
//! which turns text columns with few values into dictionaries (`dictionary.rs`), encodes,
//! compresses and writes them while the caller validates the next chunk (both
//! cores busy). At most two row groups wait in between, so memory stays bounded. Row groups
//! depend only on the data and the row-group size, never on timing, and one thread writes them in
//! order, so the same input gives the same bytes.

pub mod i18n;
pub mod codebook;
mod dictionary;
pub mod public;
pub mod report;
pub mod sdmx;
pub mod sims;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{IoContext, PolarsContext, Result};
pub use crate::manifest::{HashedFile, OutputFile, hash_file, relative};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Whether a column type is an unsigned integer, written as Int64 instead.
fn widened(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64
    )
}

/// `df` with every unsigned integer column as Int64 (a count never exceeds 2^63).
pub fn signed(mut df: DataFrame) -> Result<DataFrame> {
    let names: Vec<PlSmallStr> = df
        .columns()
        .iter()
        .filter(|c| widened(c.dtype()))
        .map(|c| c.name().clone())
        .collect();
    for n in names {
        let c = df
            .column(&n)
            .and_then(|c| c.strict_cast(&DataType::Int64))
            .ctx(|| format!("column {n} as a signed integer"))?;
        df.with_column(c)
            .ctx(|| format!("column {n} as a signed integer"))?;
    }
    Ok(df)
}

/// `df` (a table's cells of one period) with the period's typed column right after
/// `ref_period` (`ref_year` Int64, `ref_quarter`/`ref_month` text, `ref_date` a date), so that
/// every reader of the files sees the period with one type (a Hive folder would be read as
/// int32, int64 or a category depending on the reader).
pub fn with_period(
    mut df: DataFrame,
    period: &crate::spec::period::RefPeriod,
) -> Result<DataFrame> {
    use crate::spec::period::PeriodValue;
    let (name, value) = period.typed_column();
    let h = df.height();
    let column = match value {
        PeriodValue::Year(y) => Column::new_scalar(name.into(), Scalar::from(y), h),
        PeriodValue::Text(t) => {
            Column::new_scalar(name.into(), Scalar::from(PlSmallStr::from(t.as_str())), h)
        }
        PeriodValue::Date(d) => Column::new_scalar(
            name.into(),
            Scalar::new(
                DataType::Date,
                AnyValue::Date(crate::calendar::days_of_date(d)),
            ),
            h,
        ),
    };
    let at = df
        .get_column_index("ref_period")
        .map_or(df.width(), |i| i + 1);
    df.insert_column(at, column)
        .ctx(|| format!("adding the period column {name}"))?;
    Ok(df)
}

/// `schema` with every unsigned integer field as Int64 (see [`signed`]).
pub fn signed_schema(schema: &Schema) -> Schema {
    schema
        .iter()
        .map(|(n, dt)| {
            let dt = if widened(dt) {
                DataType::Int64
            } else {
                dt.clone()
            };
            Field::new(n.clone(), dt)
        })
        .collect()
}

pub struct ParquetSink {
    path: PathBuf,
    /// The schema's `Enum` columns: a frame's text column of that name is cast to its `Enum`.
    enums: Vec<(PlSmallStr, DataType)>,
    /// Full row groups for the writer thread; `None` once finished.
    tx: Option<std::sync::mpsc::SyncSender<DataFrame>>,
    writer: Option<std::thread::JoinHandle<Result<()>>>,
    pending: Option<DataFrame>,
    rows: u64,
}

impl ParquetSink {
    /// Create `path` for frames of `schema`; `metadata` becomes the file's key-value metadata.
    ///
    /// An `Enum` column of `schema` (a derived code column whose codes the spec fixes) is
    /// written as its codes' dictionary and indices, as polars holds it, and declared as text
    /// in the file's Arrow schema (`ARROW:schema`, which polars writes only when the metadata
    /// has none): every reader (polars, pyarrow, DuckDB, DataFusion) reads the same strings as
    /// from a text column, and the writer does not hash every value to build the dictionary.
    pub fn create(path: &Path, schema: &Schema, metadata: &[(String, String)]) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let schema = signed_schema(schema);
        let enums: Vec<(PlSmallStr, DataType)> = schema
            .iter()
            .filter(|(_, dt)| matches!(dt, DataType::Enum(..)))
            .map(|(n, dt)| (n.clone(), dt.clone()))
            .collect();
        let mut metadata = metadata.to_vec();
        if !enums.is_empty() {
            let text: Schema = schema
                .iter()
                .map(|(n, dt)| match dt {
                    DataType::Enum(..) => Field::new(n.clone(), DataType::String),
                    _ => Field::new(n.clone(), dt.clone()),
                })
                .collect();
            let arrow = polars_parquet::arrow::write::schema_to_metadata_key(
                &text.to_arrow(CompatLevel::newest()),
            );
            if let Some(value) = arrow.value {
                metadata.push((arrow.key, value));
            }
        }
        let file = File::create(path).at(path)?;
        let writer = ParquetWriter::new(BufWriter::with_capacity(1 << 20, file))
            .with_compression(ParquetCompression::Zstd(None))
            .with_statistics(StatisticsOptions::full())
            .with_row_group_size(Some(ROW_GROUP_ROWS))
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(metadata)))
            .batched(&schema)
            .ctx(|| format!("creating Parquet file {}", path.display()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<DataFrame>(2);
        let shown = path.display().to_string();
        let handle = std::thread::Builder::new()
            .name("parquet-writer".into())
            .spawn(move || -> Result<()> {
                let mut writer = writer;
                for df in rx {
                    let df = dictionary::with_dictionaries(df)?;
                    writer.write_batch(&df).ctx(|| format!("writing {shown}"))?;
                    // A row group is on disk, the footer is not: the fault tests stop a run here.
                    crate::fault::fault("mid_parquet");
                }
                writer.finish().ctx(|| format!("finishing {shown}"))?;
                Ok(())
            })
            .at(path)?;
        Ok(ParquetSink {
            path: path.to_path_buf(),
            enums,
            tx: Some(tx),
            writer: Some(handle),
            pending: None,
            rows: 0,
        })
    }

    /// The writer thread's outcome (after it stopped): its error, or a panic as an error.
    fn join(&mut self) -> Result<()> {
        match self.writer.take().map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(crate::Error::Internal(format!(
                "the writer thread of {} panicked",
                self.path.display()
            ))),
        }
    }

    pub fn write(&mut self, df: DataFrame) -> Result<()> {
        if df.height() == 0 {
            return Ok(());
        }
        let mut df = signed(df)?;
        for (n, dt) in &self.enums {
            let cast = match df.column(n) {
                Ok(c) if c.dtype() != dt => Some(c.cast(dt)),
                _ => None,
            };
            if let Some(c) = cast {
                let c = c.ctx(|| format!("column {n} of {} as its codes", self.path.display()))?;
                df.with_column(c)
                    .ctx(|| format!("column {n} of {}", self.path.display()))?;
            }
        }
        self.rows += df.height() as u64;
        let mut pending = match self.pending.take() {
            None => df,
            Some(mut p) => {
                p.vstack_mut_owned(df)
                    .ctx(|| format!("buffering rows for {}", self.path.display()))?;
                p
            }
        };
        // Row groups of exactly ROW_GROUP_ROWS rows (the last one shorter), whatever the sizes
        // of the frames written: the same rows give the same file however they were chunked.
        while pending.height() >= ROW_GROUP_ROWS {
            let tail = pending.slice(ROW_GROUP_ROWS as i64, pending.height() - ROW_GROUP_ROWS);
            self.flush(pending.slice(0, ROW_GROUP_ROWS))?;
            pending = tail;
        }
        if pending.height() > 0 {
            self.pending = Some(pending);
        }
        Ok(())
    }

    fn flush(&mut self, mut df: DataFrame) -> Result<()> {
        df.rechunk_mut();
        let sent = self.tx.as_ref().map(|tx| tx.send(df));
        match sent {
            Some(Ok(())) => Ok(()),
            // The writer thread stopped: it has the reason.
            _ => {
                self.tx = None;
                self.join()?;
                Err(crate::Error::Internal(format!(
                    "the writer of {} stopped early",
                    self.path.display()
                )))
            }
        }
    }

    /// Write what is buffered, close the file and hash it.
    pub fn finish(mut self, out_dir: &Path) -> Result<OutputFile> {
        if let Some(p) = self.pending.take() {
            self.flush(p)?;
        }
        self.tx = None;
        self.join()?;
        let (bytes, hash) = hash_file(&self.path)?;
        Ok(OutputFile {
            path: relative(&self.path, out_dir),
            rows: self.rows,
            bytes,
            blake3: hash,
        })
    }
}

/// Write `bytes` to `path` through a temporary file and a rename, so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).at(dir)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)
}

/// Text escaped for XML and HTML (element content and quoted attributes).
pub(crate) fn escape_markup(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// Write a release's documents into `dir` (the release being built, its public tables written):
/// `public/codebook.md` (and one per further language), `public/datapackage.json`,
/// `public/sdmx/`, `public/metadata/sims.json`, `report/index.html` (and one per further
/// language). `previous`: the current release, whose code-list versions carry on.
pub fn documents(
    plan: &crate::spec::Plan,
    dir: &Path,
    manifest: &crate::manifest::Manifest,
    history: &[crate::manifest::HistoryRecord],
    previous: Option<&Path>,
) -> Result<Vec<OutputFile>> {
    let docs = codebook::tables(plan, dir, &manifest.protection)?;
    let previous = previous
        .and_then(|p| std::fs::read_to_string(crate::layout::Release(p).sdmx_structure()).ok());
    let mut out = sdmx::write(plan, dir, &docs, previous.as_deref())?;
    // Reference metadata (SIMS), also the codebook's last section.
    let reports = sims::reports(plan, manifest, &docs);
    // The codebook and the report in each publication language, the first as the plain names;
    // the languages side by side, listed in the plan's order.
    let written = crate::parallel::map(
        plan.languages.iter().copied().enumerate().collect(),
        |(i, lang)| -> Result<[OutputFile; 2]> {
            let release = crate::layout::Release(dir);
            let (codebook, report) = match i {
                0 => (release.codebook(), release.report()),
                _ => (
                    release.codebook_in(lang.code()),
                    release.report_in(lang.code()),
                ),
            };
            let md =
                codebook::markdown(plan, manifest, &docs, lang) + &sims::markdown(&reports, lang);
            let md = sdmx::write_file(dir, &codebook, md.as_bytes(), 0)?;
            let page = report::html(plan, manifest, &docs, history, lang);
            Ok([md, sdmx::write_file(dir, &report, page.as_bytes(), 0)?])
        },
    );
    for files in written {
        out.extend(files?);
    }
    // Reference metadata (SIMS): JSON and an SDMX generic metadata set.
    let sims_json = serde_json::to_string_pretty(&sims::json(plan, &reports))
        .map_err(|e| crate::Error::Internal(format!("serialising sims.json: {e}")))?;
    let release = crate::layout::Release(dir);
    out.push(sdmx::write_file(
        dir,
        &release.sims(),
        (sims_json + "\n").as_bytes(),
        0,
    )?);
    out.push(sdmx::write_file(
        dir,
        &release.sdmx_metadata(),
        sims::sdmx(plan, &reports).as_bytes(),
        0,
    )?);
    let dp = serde_json::to_string_pretty(&codebook::datapackage(plan, manifest, &docs))
        .map_err(|e| crate::Error::Internal(format!("serialising datapackage.json: {e}")))?;
    out.push(sdmx::write_file(
        dir,
        &crate::layout::Release(dir).datapackage(),
        (dp + "\n").as_bytes(),
        0,
    )?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_for_content_and_attributes() {
        assert_eq!(
            escape_markup(r#"<a href="x">R&D's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;R&amp;D&apos;s&lt;/a&gt;"
        );
        assert_eq!(escape_markup("Rabat — الرباط"), "Rabat — الرباط");
    }

    #[test]
    fn paths_are_listed_relative_with_slashes() {
        let base = Path::new("/out/r1");
        assert_eq!(
            relative(&base.join("public").join("tables").join("t"), base),
            "public/tables/t"
        );
        // Outside the base: the path as it is.
        assert_eq!(relative(Path::new("/elsewhere/x"), base), "/elsewhere/x");
    }

    #[test]
    fn an_atomic_write_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub").join("doc.json");
        write_atomic(&p, b"{}").unwrap();
        write_atomic(&p, b"[1]").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"[1]");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("doc.json")]);
    }
}
