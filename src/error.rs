//! Library errors and the process exit codes they map to.
//!
//! Every error names the file, key, source, column or row it concerns and, where there is one,
//! what the user can do about it. Bad *rows* are never errors: they are data (the quarantine).

use std::fmt;
use std::path::{Path, PathBuf};

/// Exit codes, after BSD `sysexits.h`; documented in the README.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Runtime or I/O error.
    pub const RUNTIME: i32 = 1;
    /// The command was used wrongly: a bad argument, an SQL query that does not run, a
    /// directory that does not exist (`EX_USAGE`).
    pub const USAGE: i32 = 64;
    /// Input data rejected beyond a source's tolerance (`EX_DATAERR`).
    pub const DATA_REJECTED: i32 = 65;
    /// Internal invariant violated: a bug in migstat (`EX_SOFTWARE`).
    pub const INTERNAL: i32 = 70;
    /// Spec or configuration error (`EX_CONFIG`).
    pub const CONFIG: i32 = 78;
    /// Another run holds the output directory (EX_TEMPFAIL): try again later, or `--wait`.
    pub const LOCKED: i32 = 75;
}

/// One problem found while compiling a pipeline spec or a schema: the file, the key path inside
/// it (`sources.permits.schema`, `fields[3].constraints.maximum`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIssue {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

impl fmt::Display for SpecIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Why a source was rejected as a whole (too many bad rows, or an unreadable header).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub source_id: String,
    pub reason: String,
}

impl Rejection {
    /// A rejection whose reason is capped at [`REASON_MAX`] bytes (marked when cut): it goes to
    /// stderr, the manifest and the history, so it may not grow with the input.
    pub fn new(source_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection {
            source_id: source_id.into(),
            reason: cap_bytes(&reason.into(), REASON_MAX),
        }
    }
}

/// The longest piece of input (a raw value, a header label) a message quotes, in bytes.
pub const QUOTE_MAX: usize = 64;
/// The most items a message lists; the rest are counted.
pub const LIST_MAX: usize = 10;
/// The longest reason a rejection carries, in bytes.
pub const REASON_MAX: usize = 4096;

/// At most `max` bytes of `s`, cut at a character boundary and marked `…(+N bytes)` when cut.
pub fn cap_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…(+{} bytes)", &s[..end], s.len() - end)
}

/// A piece of input as a message quotes it: in backquotes, control characters escaped (a line
/// break or a NUL cannot break a log line), at most [`QUOTE_MAX`] bytes and marked when cut.
pub fn quote(s: &str) -> String {
    let mut shown = String::new();
    let mut used = 0;
    for c in s.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        if shown.len() + piece.len() > QUOTE_MAX {
            break;
        }
        shown.push_str(&piece);
        used += c.len_utf8();
    }
    if used < s.len() {
        format!("`{shown}`…(+{} bytes)", s.len() - used)
    } else {
        format!("`{shown}`")
    }
}

/// Pieces of input listed in a message: each [`quote`]d, at most [`LIST_MAX`] of them, then
/// `and N more`.
pub fn quote_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for i in items {
        if shown.len() < LIST_MAX {
            shown.push(quote(i));
        } else {
            more += 1;
        }
    }
    let mut out = shown.join(", ");
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shard of a sharded source pass (a `migstat shard` process) failed: what it said (the
    /// end of its log, capped) and its exit code, which the run exits with too.
    #[error("{0}")]
    Shard(String, i32),

    #[error("the pipeline spec has {} problem(s):\n{}", .0.len(), join_lines(.0))]
    Spec(Vec<SpecIssue>),

    #[error("input data rejected:\n{}", join_lines(.0.iter().map(|r| format!("source `{}`: {}", r.source_id, r.reason))))]
    Rejected(Vec<Rejection>),

    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{context}: {source}")]
    Polars {
        context: String,
        #[source]
        source: polars::error::PolarsError,
    },

    #[error("{0}")]
    Usage(String),

    /// An input file its reader could not decode (a damaged file can make a reader panic).
    #[error("{} could not be decoded ({detail}): the file is damaged or written in a form this reader does not support; check it with another reader or ask for a new copy", path.display())]
    Unreadable { path: PathBuf, detail: String },

    /// Another run holds the output directory's lock.
    #[error("{0}")]
    Locked(String),

    /// The engine computing the tables failed: its cluster cannot be reached, or a query on it
    /// failed (the message says which table and what the engine answered, capped).
    #[error("engine: {0}")]
    Engine(String),

    #[error("internal error (a bug in migstat, please report it): {0}")]
    Internal(String),

    /// A signal asked the run to stop (its number).
    #[error("stopped by {name} (signal {0}): nothing was published, the staging directory is removed; the next run starts afresh", name = signal_name(*.0))]
    Interrupted(i32),
}

/// The name a signal is known by.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        15 => "SIGTERM",
        2 => "SIGINT",
        _ => "a signal",
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source `{}`: {}", self.source_id, self.reason)
    }
}

/// Lines a message lists before it counts the rest (a spec can name hundreds of columns).
const LINES_MAX: usize = 50;

fn join_lines<I, T>(items: I) -> String
where
    I: IntoIterator<Item = T>,
    T: fmt::Display,
{
    let mut lines = Vec::new();
    let mut more = 0usize;
    for i in items {
        if lines.len() < LINES_MAX {
            lines.push(format!("  - {i}"));
        } else {
            more += 1;
        }
    }
    if more > 0 {
        lines.push(format!("  - … and {more} more"));
    }
    lines.join("\n")
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Shard(_, code) => *code,
            Error::Spec(_) => exit::CONFIG,
            Error::Usage(_) => exit::USAGE,
            Error::Locked(_) => exit::LOCKED,
            Error::Rejected(_) => exit::DATA_REJECTED,
            Error::Internal(_) => exit::INTERNAL,
            Error::Io { .. }
            | Error::Polars { .. }
            | Error::Unreadable { .. }
            | Error::Engine(_) => exit::RUNTIME,
            // As a shell reports a process a signal ended: 143 for SIGTERM, 130 for SIGINT.
            Error::Interrupted(s) => 128 + s,
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn polars(context: impl Into<String>, source: polars::error::PolarsError) -> Self {
        Error::Polars {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How many [`guard_reader`] calls are running: a panic then is a reader's on a damaged input,
/// reported as an error by the guard (the panic hook need not report it too).
static GUARDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a panic now would be caught by [`guard_reader`].
pub fn guarded() -> bool {
    GUARDED.load(std::sync::atomic::Ordering::SeqCst) > 0
}

/// Run a third-party reader on the input file `path`, turning a panic into
/// [`Error::Unreadable`]: polars' Parquet reader panics on some damaged pages, and nothing an
/// input controls may end the process with a panic.
pub fn guard_reader<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    GUARDED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    GUARDED.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("its reader stopped");
            Err(Error::Unreadable {
                path: path.to_path_buf(),
                detail: quote(detail),
            })
        }
    }
}

/// Attach a path to `std::io::Result`s.
pub trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// Attach a context sentence to polars results.
pub trait PolarsContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> PolarsContext<T> for polars::error::PolarsResult<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::polars(context(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_of_problems_is_counted_not_printed() {
        let issues: Vec<SpecIssue> = (0..473)
            .map(|k| SpecIssue {
                file: PathBuf::from("spec.toml"),
                key: format!("sources.s.design.replicates.columns.r{k}"),
                message: "must be required".to_string(),
            })
            .collect();
        let msg = Error::Spec(issues).to_string();
        assert!(
            msg.starts_with("the pipeline spec has 473 problem(s):"),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 1 + LINES_MAX + 1, "{msg}");
        assert!(msg.ends_with("  - … and 423 more"), "{msg}");
        assert!(
            msg.contains("columns.r49:") && !msg.contains("columns.r50:"),
            "{msg}"
        );
    }

    #[test]
    fn quotes_are_short_escaped_and_marked() {
        assert_eq!(quote("age"), "`age`");
        assert_eq!(quote("a\nb\r"), "`a\\nb\\r`");
        let long = "é".repeat(100); // 200 bytes
        let q = quote(&long);
        // 32 characters of 2 bytes fill the 64 bytes; 136 bytes are left out.
        assert_eq!(q, format!("`{}`…(+136 bytes)", "é".repeat(32)));
        assert_eq!(cap_bytes("abcdef", 3), "abc…(+3 bytes)");
        assert_eq!(cap_bytes("ab", 3), "ab");
        assert_eq!(cap_bytes("éé", 3), "é…(+2 bytes)");
        let items: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        let l = quote_list(items.iter().map(String::as_str));
        assert!(
            l.starts_with("`c0`, `c1`") && l.ends_with("`c9` and 15 more"),
            "{l}"
        );
        let r = Rejection::new("s", "x".repeat(10 * REASON_MAX));
        assert!(r.reason.len() < REASON_MAX + 32);
    }
}
