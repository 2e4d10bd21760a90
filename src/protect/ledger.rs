//! The ledger: every publication of a reference period of a group of linked tables, kept in the
//! restricted tier of every release, so that a revision knows what the intruder already holds.
//!
//! Input: a group's protection (its cells: true value, published value, status, rule; its
//! finest cells: true and published counts) per vintage. Output:
//! `restricted/ledger/<group>/<period partition>/ledger.parquet` (`ref_year=2024`, …), carried from release to release
//! (hard-linked when unchanged), read back by the next run.
//!
//! A vintage is one publication of the period. With `revisions = "freeze"` a period is published
//! once and every later release republishes it byte for byte: nothing a later delivery adds can
//! be seen by comparing releases. A revision (`migstat run --revise`, or `revisions =
//! "every_release"`) adds a vintage computed with every earlier one in view (see `protect`):
//! cells suppressed before stay suppressed; a cell whose change since an earlier vintage is
//! below the threshold is protected like a small cell; a perturbed finest cell keeps its
//! published count unless its true count moved by the threshold or more.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use super::Conf;
use super::suppress::Rule;
use crate::error::{Error, PolarsContext, Result};
use crate::spec::GroupSpec;

/// One publication of a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vintage {
    pub number: u32,
    /// Cell codes (union dimensions, `_T` for margins) → (true value, published value, status,
    /// rule).
    pub cells: BTreeMap<Vec<String>, (u64, Option<u64>, Conf, Rule)>,
    /// Finest cell codes → (true count, published count for perturbative methods).
    pub rows: BTreeMap<Vec<String>, (u64, Option<u64>)>,
}

/// Every publication of one period of one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// What the group is ([`definition`]): a ledger of another definition is not this group's.
    pub definition: String,
    pub vintages: Vec<Vintage>,
}

/// The identity of a group's publication: its members' definitions and protection. A change
/// (a new dimension, another threshold) starts a new series.
pub fn definition(g: &GroupSpec) -> String {
    let json = legacy_kind_spelling(serde_json::to_string(g).unwrap_or_default());
    blake3::hash(json.as_bytes()).to_hex().to_string()
}

/// Survey table kinds were serialized `surveytotal`, … before they took the spec's spelling
/// (`survey_total`); the identity of a series keeps the old spelling, so a series published
/// before goes on (a new identity would publish it afresh, ignoring what is already out). A
/// string value cannot produce the pattern: its quotes are escaped.
fn legacy_kind_spelling(json: String) -> String {
    ["total", "mean", "proportion", "ratio"]
        .iter()
        .fold(json, |j, k| {
            j.replace(
                &format!("\"kind\":\"survey_{k}\""),
                &format!("\"kind\":\"survey{k}\""),
            )
        })
}

fn rule_from(code: &str) -> Rule {
    match code {
        "threshold" => Rule::Threshold,
        "change" => Rule::Change,
        "sticky" => Rule::Sticky,
        "secondary" => Rule::Secondary,
        "hidden" => Rule::Hidden,
        _ => Rule::None,
    }
}

impl Ledger {
    pub fn next_vintage(&self) -> u32 {
        self.vintages.last().map_or(1, |v| v.number + 1)
    }

    /// Where a group's ledger of a period lives in a release.
    pub fn path(
        release: &Path,
        group: &str,
        period: &crate::spec::period::RefPeriod,
    ) -> std::path::PathBuf {
        crate::layout::Release(release).ledger(group, &period.key())
    }

    /// The ledger as a frame over the union dimensions `dims`.
    pub fn frame(&self, dims: &[String]) -> Result<DataFrame> {
        let mut vintage = Vec::new();
        let mut level = Vec::new();
        let mut codes: Vec<Vec<&str>> = vec![Vec::new(); dims.len()];
        let mut truth = Vec::new();
        let mut published = Vec::new();
        let mut conf = Vec::new();
        let mut rule = Vec::new();
        for v in &self.vintages {
            for (k, (t, p, c, r)) in &v.cells {
                vintage.push(v.number);
                level.push("cell");
                for (j, code) in k.iter().enumerate() {
                    codes[j].push(code.as_str());
                }
                truth.push(*t);
                published.push(*p);
                conf.push(c.code());
                rule.push(r.code());
            }
            for (k, (t, p)) in &v.rows {
                vintage.push(v.number);
                level.push("row");
                for (j, code) in k.iter().enumerate() {
                    codes[j].push(code.as_str());
                }
                truth.push(*t);
                published.push(*p);
                conf.push("F");
                rule.push("none");
            }
        }
        let h = vintage.len();
        let mut cols = vec![
            Column::new("vintage".into(), vintage),
            Column::new("level".into(), level),
        ];
        for (d, c) in dims.iter().zip(codes) {
            cols.push(Column::new(d.as_str().into(), c));
        }
        cols.push(Column::new("true_value".into(), truth));
        cols.push(Column::new("published".into(), published));
        cols.push(Column::new("conf".into(), conf));
        cols.push(Column::new("rule".into(), rule));
        DataFrame::new(h, cols).ctx(|| "ledger frame".to_string())
    }

    /// Read a ledger written by [`Ledger::frame`] (with its definition in the file's metadata
    /// under `definition`).
    pub fn read(path: &Path, dims: &[String]) -> Result<Self> {
        let ctx = |what: &str| format!("{}: {what}", path.display());
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = ParquetReader::new(&mut file);
        let definition = reader
            .get_metadata()
            .ok()
            .and_then(|m| {
                m.key_value_metadata()
                    .as_ref()?
                    .iter()
                    .find(|kv| kv.key == "definition")
                    .and_then(|kv| kv.value.clone())
            })
            .unwrap_or_default();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let df = ParquetReader::new(file).finish().ctx(|| ctx("reading"))?;
        let s = |c: &str| -> Result<StringChunked> {
            Ok(df.column(c).ctx(|| ctx(c))?.str().ctx(|| ctx(c))?.clone())
        };
        let u = |c: &str| -> Result<UInt64Chunked> {
            Ok(df
                .column(c)
                .ctx(|| ctx(c))?
                .cast(&DataType::UInt64)
                .ctx(|| ctx(c))?
                .u64()
                .ctx(|| ctx(c))?
                .clone())
        };
        let vintage = u("vintage")?;
        let level = s("level")?;
        let codes: Vec<StringChunked> = dims.iter().map(|d| s(d)).collect::<Result<_>>()?;
        let truth = u("true_value")?;
        let published = u("published")?;
        let conf = s("conf")?;
        let rule = s("rule")?;
        let mut vintages: BTreeMap<u32, Vintage> = BTreeMap::new();
        for i in 0..df.height() {
            let n = vintage.get(i).unwrap_or(0) as u32;
            let v = vintages.entry(n).or_insert_with(|| Vintage {
                number: n,
                ..Default::default()
            });
            let key: Vec<String> = codes
                .iter()
                .map(|c| c.get(i).unwrap_or_default().to_string())
                .collect();
            let t = truth.get(i).unwrap_or(0);
            let p = published.get(i);
            if level.get(i) == Some("row") {
                v.rows.insert(key, (t, p));
            } else {
                let c = conf
                    .get(i)
                    .and_then(Conf::from_code)
                    .unwrap_or(Conf::Secondary);
                v.cells
                    .insert(key, (t, p, c, rule_from(rule.get(i).unwrap_or_default())));
            }
        }
        Ok(Ledger {
            definition,
            vintages: vintages.into_values().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keep_their_identity_across_the_kind_spelling() {
        // By hand: what serde wrote before the spelling changed, and after.
        let before = r#"{"id":"g","kind":"surveytotal","name":"kind: \"survey_total\""}"#;
        let after = r#"{"id":"g","kind":"survey_total","name":"kind: \"survey_total\""}"#;
        assert_eq!(legacy_kind_spelling(after.to_string()), before);
        for k in ["mean", "proportion", "ratio"] {
            let j = format!(r#"{{"kind":"survey_{k}"}}"#);
            assert_eq!(
                legacy_kind_spelling(j),
                format!(r#"{{"kind":"survey{k}"}}"#)
            );
        }
        let count = r#"{"kind":"count"}"#;
        assert_eq!(legacy_kind_spelling(count.to_string()), count);
    }

    #[test]
    fn a_ledger_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut v1 = Vintage {
            number: 1,
            ..Default::default()
        };
        v1.cells.insert(
            vec!["F".into(), "_T".into()],
            (3, None, Conf::Primary, Rule::Threshold),
        );
        v1.cells.insert(
            vec!["_T".into(), "_T".into()],
            (40, Some(40), Conf::Free, Rule::None),
        );
        v1.rows.insert(vec!["F".into(), "a".into()], (3, Some(5)));
        let l = Ledger {
            definition: "abc".into(),
            vintages: vec![v1],
        };
        let dims = vec!["SEX".to_string(), "AGE".to_string()];
        let mut df = l.frame(&dims).unwrap();
        let path = dir.path().join("l.parquet");
        let f = std::fs::File::create(&path).unwrap();
        let mut meta = polars::prelude::KeyValueMetadata::from_static(vec![(
            "definition".to_string(),
            "abc".to_string(),
        )]);
        let _ = &mut meta;
        ParquetWriter::new(f)
            .with_key_value_metadata(Some(meta))
            .finish(&mut df)
            .unwrap();
        let back = Ledger::read(&path, &dims).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.next_vintage(), 2);
    }
}
