//! Code lists as a spec loads them: `schemas/codelists/*.csv` (codes in the first column, their
//! attributes after), and the normalization crosswalk lookups apply.
//!
//! Input: the code-list directory. Output: [`CodeList`]s, or a [`SpecIssue`](crate::error::SpecIssue) per bad file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Ctx;
use crate::spec::Banding;

/// A code list: codes (its first column) and their attributes.
#[derive(Debug, Clone, Serialize)]
pub struct CodeList {
    pub name: String,
    pub path: PathBuf,
    /// blake3 of the bytes the list was parsed from (hashed once, when the spec is loaded).
    #[serde(skip)]
    pub blake3: String,
    #[serde(skip)]
    pub columns: Vec<String>,
    /// code → attribute values, in `columns` order (the code itself first).
    #[serde(skip)]
    pub rows: BTreeMap<String, Vec<String>>,
}

impl CodeList {
    pub fn attribute(&self, code: &str, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows
            .get(code)
            .and_then(|r| r.get(i))
            .map(String::as_str)
    }
}

/// How raw values are normalized before a crosswalk lookup.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Normalize {
    pub trim: bool,
    pub lowercase: bool,
    pub nfc: bool,
}

impl Normalize {
    pub fn apply(&self, s: &str) -> String {
        use unicode_normalization::UnicodeNormalization;
        let s = if self.trim { s.trim() } else { s };
        let s: String = if self.nfc {
            s.nfc().collect()
        } else {
            s.to_string()
        };
        if self.lowercase { s.to_lowercase() } else { s }
    }
}

/// Load every code list in `dir` (each `*.csv` but the age bandings), and the bandings.
pub(crate) fn load_codelists(
    dir: &Path,
    cx: &mut Ctx<'_>,
) -> (BTreeMap<String, CodeList>, Vec<Banding>) {
    let mut lists = BTreeMap::new();
    let mut bandings = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        cx.push(
            "codelists",
            format!("cannot read the code-list directory {}", dir.display()),
        );
        return (lists, bandings);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "age_bands" {
            match Banding::load_all(&path) {
                Ok(b) => bandings = b,
                Err(e) => cx.push("codelists", e.to_string()),
            }
            continue;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                cx.push("codelists", format!("{}: {e}", path.display()));
                continue;
            }
        };
        let blake3 = blake3::hash(&bytes).to_hex().to_string();
        match parse_table(&bytes) {
            Ok((columns, records)) => {
                let rows = records
                    .into_iter()
                    .filter_map(|r| Some((r.first()?.clone(), r)))
                    .collect();
                lists.insert(
                    name.clone(),
                    CodeList {
                        name,
                        path,
                        blake3,
                        columns,
                        rows,
                    },
                );
            }
            Err(e) => cx.push("codelists", format!("{}: {e}", path.display())),
        }
    }
    (lists, bandings)
}

pub(crate) fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    parse_table(&std::fs::read(path).map_err(|e| e.to_string())?)
}

/// A code-list CSV's header and records, from its bytes.
fn parse_table(bytes: &[u8]) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut rdr = csv::Reader::from_reader(bytes);
    let header = rdr
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for r in rdr.records() {
        rows.push(
            r.map_err(|e| e.to_string())?
                .iter()
                .map(str::to_string)
                .collect(),
        );
    }
    Ok((header, rows))
}
