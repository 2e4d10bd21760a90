//! The protection settings a spec declares that more than one stage reads: where the protection
//! key comes from, how secondary cells are chosen, the default protection range.
//!
//! Input: nothing (types and defaults). Output: [`KeySource`], [`Secondary`],
//! [`DEFAULT_PROTECTION_RANGE`], used by the spec's compiler and by `protect`.

use std::path::PathBuf;

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
