//! The one writer of the public tier's tables.
//!
//! Input: a [`ProtectedTable`] (only `protect` can make one) and the release directory.
//! Output: `public/tables/<id>/<period>/data.parquet` (`2024`, `2024-Q1`, `2024-12-31`, …), the
//! period's typed column (`ref_year`, …) added to the cells, with its [`OutputFile`] record.
//!
//! Nothing else writes a table under `public/`. The file's key-value metadata is built here
//! from public facts only: migstat's version, the pipeline id, the table's definition (its
//! dimensions, kind, unit, filter and protection method with its parameters — never a key or a
//! file path), the hashes of the code lists (public files), and [`PublicProtection`]. Nothing
//! about the deliveries (paths, hashes), the spec's hash, or a count of changed cells.

use std::path::Path;

use super::{OutputFile, ParquetSink};
use crate::error::{Error, Result};
use crate::protect::{ProtectedTable, PublicProtection};
use crate::spec::{Plan, TableSpec};

/// The table's definition as a public file may state it: no perturbation-table path.
pub fn public_definition(t: &TableSpec) -> Result<String> {
    let mut t = t.clone();
    if let Some(p) = t.protect.as_mut() {
        p.ptable = p
            .ptable
            .as_ref()
            .and_then(|f| f.file_name().map(Into::into));
    }
    serde_json::to_string(&t)
        .map_err(|e| Error::Internal(format!("serialising table {}: {e}", t.id)))
}

/// The code lists' names and blake3 hashes (public files of the repository), as hashed when
/// the spec was loaded: the bytes the run used, whatever happens to the files afterwards.
pub fn codelist_hashes(plan: &Plan) -> String {
    plan.codelists
        .values()
        .map(|c| format!("{}={}", c.name, c.blake3))
        .collect::<Vec<_>>()
        .join(";")
}

/// Write a protected table to the public tier of the release in `dir`.
pub fn write_table(plan: &Plan, dir: &Path, t: &ProtectedTable) -> Result<OutputFile> {
    let spec = plan
        .tables
        .iter()
        .find(|x| x.id == t.table())
        .ok_or_else(|| Error::Internal(format!("public table {}: no spec", t.table())))?;
    let protection: PublicProtection = t.public_protection();
    let metadata = vec![
        ("migstat_version".to_string(), crate::VERSION.to_string()),
        ("pipeline_id".to_string(), plan.pipeline_id.clone()),
        ("table".to_string(), public_definition(spec)?),
        ("codelists_blake3".to_string(), codelist_hashes(plan)),
        (
            "protection".to_string(),
            serde_json::to_string(&protection)
                .map_err(|e| Error::Internal(format!("serialising protection: {e}")))?,
        ),
    ];
    let path = crate::layout::Release(dir).public_table(t.table(), &t.period().partition());
    let frame = super::with_period(t.public().clone(), t.period())?;
    let mut sink = ParquetSink::create(&path, frame.schema(), &metadata)?;
    sink.write(frame)?;
    sink.finish(dir)
}
