//! The identifier gate: the last check before a release is published. Every file of the public
//! tier is scanned (Parquet schemas, SDMX-CSV header rows) for a column that is an identifier or
//! derived from one; any found rejects the run.
//!
//! Input: the plan and the staging directory. Output: the rejections (empty: nothing leaks).

use super::source::relative_to;
use super::*;

/// Every column name that would carry an identifier: each source's person and record ids and
/// primary-key fields, delivered (`raw_<field>`) or as a code derived from them.
pub(super) fn identifier_columns(plan: &Plan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in &plan.sources {
        let ids: Vec<&String> = s
            .person_id
            .iter()
            .chain(&s.record_id)
            .chain(&s.schema.primary_key)
            .collect();
        for id in &ids {
            let why = format!("identifier `{id}` of source `{}`", s.id);
            out.insert(id.to_string(), why.clone());
            out.insert(crate::vocab::raw_column(id), why);
        }
        for d in &s.harmonize {
            if let crate::spec::Derivation::Code { from, .. } = &d.derivation
                && ids.contains(&from)
            {
                out.insert(
                    d.name.clone(),
                    format!("derived from identifier `{from}` of source `{}`", s.id),
                );
            }
        }
    }
    out
}

/// Scan the columns of every file written to the public tier (Parquet schemas, SDMX-CSV header
/// rows) for identifiers.
pub(super) fn check_public_columns(plan: &Plan, staging: &Path) -> Result<Vec<Rejection>> {
    let ids = identifier_columns(plan);
    let mut found = Vec::new();
    let pattern = Release(staging).public().join("**").join("*.parquet");
    let files = glob::glob(&pattern.to_string_lossy())
        .map_err(|e| Error::Internal(format!("public tier scan: {e}")))?;
    // SDMX-CSV files: their header row.
    let csv_pattern = Release(staging).public().join("**").join("*.csv");
    let csv_files = glob::glob(&csv_pattern.to_string_lossy())
        .map_err(|e| Error::Internal(format!("public tier scan: {e}")))?;
    let mut headers: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for file in files.flatten() {
        let f = std::fs::File::open(&file).at(&file)?;
        let schema = ParquetReader::new(f)
            .schema()
            .map_err(|e| Error::Internal(format!("reading {}: {e}", file.display())))?;
        headers.push((file, schema.iter_names().map(|n| n.to_string()).collect()));
    }
    for file in csv_files.flatten() {
        let mut rdr = csv::Reader::from_path(&file)
            .map_err(|e| Error::Internal(format!("reading {}: {e}", file.display())))?;
        let names = rdr
            .headers()
            .map_err(|e| Error::Internal(format!("reading {}: {e}", file.display())))?
            .iter()
            .map(str::to_string)
            .collect();
        headers.push((file, names));
    }
    for (file, names) in headers {
        for name in names {
            if let Some(why) = ids.get(name.as_str()) {
                found.push(Rejection::new(
                    plan.pipeline_id.as_str(),
                    format!(
                        "public file {} has column `{name}`, {why}: identifiers never leave the restricted tier",
                        relative_to(&file, staging).display()
                    ),
                ));
            }
        }
    }
    Ok(found)
}
