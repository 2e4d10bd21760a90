//! Protection in a spec: a table's `protect` key (the method and its parameters), and the
//! settings more than one stage reads: where the protection key comes from, how secondary cells
//! are chosen, the default protection range.
//!
//! Input: the TOML value of `protect`. Output: [`Protect`] (or a spec issue for every problem),
//! [`KeySource`], [`Secondary`], [`DEFAULT_PROTECTION_RANGE`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Ctx, Section};

/// The protection range of cell suppression when the spec names none (count tables) and of
/// survey groups: every protected cell's interval, as the intruder computes it from everything
/// published (LP bounds, non-negativity, and a suppressed cell may be empty), spans at least 2
/// — a cell of 1 cannot be told from 0, 1, 2 or more. Larger ranges protect more and suppress
/// more (BENCHMARKS.md "Information loss").
pub const DEFAULT_PROTECTION_RANGE: f64 = 2.0;

/// The default environment variable holding the key.
pub const DEFAULT_ENV: &str = "MIGSTAT_PROTECTION_KEY";

/// Where the key comes from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeySource {
    /// Environment variable read first.
    pub env: String,
    /// Key file read when the variable is unset or empty (created when missing).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

impl Default for KeySource {
    fn default() -> Self {
        KeySource {
            env: DEFAULT_ENV.to_string(),
            file: None,
        }
    }
}

/// How secondary cells are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Secondary {
    Gauss,
    Hypercube,
}

/// How a count table is protected before it is published.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Protect {
    pub method: ProtectMethod,
    /// Cells with 0 < contributors < `threshold` need protection: primary-suppressed under
    /// `suppress`, audited (never pinned) under the perturbative methods; on a revision, a cell
    /// whose change since an earlier publication is that small needs it too.
    pub threshold: u64,
    /// The audit's requirement: the interval of values an intruder cannot rule out for a cell
    /// that needs protection, given every public table of the release and every earlier
    /// release, is at least this wide (default: the threshold under `suppress`, 1 — never
    /// pinned — under the perturbative methods).
    pub protection_range: f64,
    /// Rounding base.
    pub base: u64,
    /// Suppression: never choose the grand total for secondary suppression (a total published
    /// elsewhere); a cell nothing else protects then fails the audit.
    pub publish_grand_total: bool,
    /// Cell key method: the perturbation table (`i,j,p` CSV, as R's `ptable` package writes);
    /// `None` is the built-in default (see `protect::cellkey`).
    pub ptable: Option<std::path::PathBuf>,
    /// Suppression: how secondary cells are chosen (`gauss`, the default, or `hypercube`).
    pub secondary: crate::spec::Secondary,
    /// What a later release does with a period already published (see [`Revisions`]).
    pub revisions: Revisions,
}

/// What a release does with a reference period an earlier release already published.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Revisions {
    /// Publish it again exactly as it was (the default): a record added to or corrected in a
    /// published period changes nothing public until a revision (`migstat run --revise`);
    /// the manifest counts the cells waiting for it.
    Freeze,
    /// Recompute it in every release, as a revision: cells suppressed before stay suppressed,
    /// and a cell whose change since any earlier publication is below the threshold is
    /// protected like a small cell (or, perturbed, keeps its published value).
    EveryRelease,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProtectMethod {
    /// Threshold rule, then secondary suppression over the linked tables' cells, then the
    /// audit.
    Suppress,
    /// Every finest cell rounded to the nearest multiple of `base`; margins are their sums.
    Round,
    /// Every finest cell rounded up or down to a multiple of `base`, up with probability
    /// (n mod base)/base from a keyed hash (the protection key); margins are their sums.
    RandomRound,
    /// Cell key method on the finest cells (record keys from the protection key); margins are
    /// their sums.
    CellKey,
}

impl ProtectMethod {
    pub fn name(self) -> &'static str {
        match self {
            ProtectMethod::Suppress => "suppress",
            ProtectMethod::Round => "round",
            ProtectMethod::RandomRound => "random_round",
            ProtectMethod::CellKey => "cell_key",
        }
    }
}

/// `protect = { method = ..., ... }` of a table. The section is finished here (its unread keys
/// reported) once the method is known; a missing or unknown method is the one issue reported.
pub(crate) fn protect(t: &Section<'_>, spec_dir: &Path, cx: &mut Ctx<'_>) -> Option<Protect> {
    let pp = format!("{}.", t.path());
    let method = match cx.str(t, "method", true) {
        Some("suppress") => ProtectMethod::Suppress,
        Some("round") => ProtectMethod::Round,
        Some("random_round") => ProtectMethod::RandomRound,
        Some("cell_key") => ProtectMethod::CellKey,
        Some(other) => {
            cx.push(
                format!("{pp}method"),
                format!("`{other}` is not a method (suppress, round, random_round or cell_key)"),
            );
            return None;
        }
        None => return None,
    };
    let int = |key: &str, default: u64, min: u64, cx: &mut Ctx<'_>| match t.get(key) {
        None => default,
        Some(v) => match v.as_integer().and_then(|i| u64::try_from(i).ok()) {
            Some(n) if n >= min => n,
            _ => {
                cx.push(
                    format!("{pp}{key}"),
                    format!("must be an integer of at least {min}"),
                );
                default
            }
        },
    };
    let threshold = int("threshold", 5, 1, cx);
    let base = int("base", 5, 2, cx);
    if t.get("seed").is_some() {
        cx.push(
            format!("{pp}seed"),
            "a seed is a secret and has no place in a spec: remove it; the noise is keyed by the protection key ([protection] key_file, or the MIGSTAT_PROTECTION_KEY environment variable)",
        );
    }
    let perturbative = method != ProtectMethod::Suppress;
    let protection_range = match t.get("protection_range") {
        None if perturbative => 1.0,
        None => crate::spec::DEFAULT_PROTECTION_RANGE,
        Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(r) if r > 0.0 && r.is_finite() => r,
            _ => {
                cx.push(format!("{pp}protection_range"), "must be a positive number");
                threshold as f64
            }
        },
    };
    for (key, used) in [
        (
            "base",
            matches!(method, ProtectMethod::Round | ProtectMethod::RandomRound),
        ),
        ("publish_grand_total", method == ProtectMethod::Suppress),
        ("secondary", method == ProtectMethod::Suppress),
        ("ptable", method == ProtectMethod::CellKey),
    ] {
        if t.get(key).is_some() && !used {
            cx.push(
                format!("{pp}{key}"),
                format!("`{key}` does not apply to method {}", method.name()),
            );
        }
    }
    let secondary = match cx.str(t, "secondary", false) {
        None | Some("gauss") => crate::spec::Secondary::Gauss,
        Some("hypercube") => crate::spec::Secondary::Hypercube,
        Some(other) => {
            cx.push(
                format!("{pp}secondary"),
                format!("`{other}` is not a secondary suppression method (gauss or hypercube)"),
            );
            crate::spec::Secondary::Gauss
        }
    };
    let revisions = match cx.str(t, "revisions", false) {
        None | Some("freeze") => Revisions::Freeze,
        Some("every_release") => Revisions::EveryRelease,
        Some(other) => {
            cx.push(
                format!("{pp}revisions"),
                format!("`{other}` is not a revision policy (freeze or every_release)"),
            );
            Revisions::Freeze
        }
    };
    let publish_grand_total = match t.get("publish_grand_total") {
        None => false,
        Some(v) => v.as_bool().unwrap_or_else(|| {
            cx.push(format!("{pp}publish_grand_total"), "must be true or false");
            false
        }),
    };
    let ptable = cx
        .str(t, "ptable", false)
        .map(|f| super::clean_path(&spec_dir.join(f)));
    if let Some(f) = &ptable
        && let Err(e) = crate::spec::PTable::read(f)
    {
        cx.push(format!("{pp}ptable"), e.to_string());
    }
    t.finish(cx);
    Some(Protect {
        method,
        threshold,
        protection_range,
        base,
        publish_grand_total,
        ptable,
        secondary,
        revisions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protect_of(body: &str) -> (Option<Protect>, Vec<String>) {
        let t: toml::Table = body.parse().unwrap();
        let mut cx = Ctx {
            file: Path::new("p.toml"),
            issues: Vec::new(),
        };
        let p = protect(
            &Section::new(&t, "tables.t.protect"),
            Path::new("."),
            &mut cx,
        );
        let issues = cx.issues.iter().map(|i| i.key.clone()).collect();
        (p, issues)
    }

    #[test]
    fn suppression_takes_its_documented_defaults() {
        let (p, issues) = protect_of(r#"method = "suppress""#);
        assert!(issues.is_empty(), "{issues:?}");
        let p = p.unwrap();
        assert_eq!(p.method, ProtectMethod::Suppress);
        assert_eq!(p.threshold, 5);
        assert_eq!(p.protection_range, DEFAULT_PROTECTION_RANGE);
        assert_eq!(p.secondary, Secondary::Gauss);
        assert!(p.ptable.is_none());
    }

    #[test]
    fn keys_of_another_method_and_secrets_are_refused() {
        // `base` belongs to rounding, `ptable` to the cell key method; a seed is a secret.
        let (_, issues) = protect_of(
            r#"method = "suppress"
base = 10
seed = 3"#,
        );
        assert_eq!(issues, ["tables.t.protect.seed", "tables.t.protect.base"]);
        let (p, issues) = protect_of(r#"method = "blur""#);
        assert!(p.is_none());
        assert_eq!(issues, ["tables.t.protect.method"]);
        let (_, issues) = protect_of(
            r#"method = "round"
base = 1"#,
        );
        assert_eq!(issues, ["tables.t.protect.base"]);
    }
}
