//! Releases: the output directory's layout, the lock, atomic publishing, pruning, verification
//! and the run history.
//!
//! Input: a finished staging directory (every file of a run, its `manifest.json` last). Output:
//! a published release. Layout of an output directory `out/`:
//!
//! ```text
//! out/current -> releases/<run-id>     symlink, switched by one rename: what readers use
//! out/releases/<run-id>/               complete releases (manifest.json, public/, restricted/, quarantine/)
//! out/failed/<run-id>/                 rejected runs, kept for inspection
//! out/history.jsonl                    one JSON line per run, whatever its outcome
//! out/.staging/<run-id>/               the run in progress (removed at the next start if left over)
//! out/.lock                            held (flock) by the running process; records its pid
//! ```
//!
//! Publishing renames the staging directory into `releases/` (one rename: a release directory is
//! complete or absent) and then points `current` at it by renaming a new symlink over the old
//! one (one rename: a reader sees the previous release or the new one, never a mix). A crash at
//! any point leaves `current` on a complete release; the next run cleans up staging.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
pub use crate::manifest::{HistoryRecord, SourceHistory};

pub use crate::fault::fault;

use crate::layout::{Out, Release};

pub fn releases_dir(out: &Path) -> PathBuf {
    Out(out).releases()
}

pub fn current(out: &Path) -> PathBuf {
    Out(out).current()
}

pub fn history_path(out: &Path) -> PathBuf {
    Out(out).history()
}

/// The output directory's lock: an exclusive `flock` on `out/.lock`, released by the kernel when
/// the process ends however it ends. The file records the holder (pid, its start time, run id)
/// for the messages; a record left behind means the previous holder died without cleaning up.
pub struct Lock {
    file: File,
}

impl Lock {
    /// Take the lock of `out`; with `wait`, block until it is free, otherwise fail at once with
    /// [`Error::Locked`] naming the holder. Returns the lock and, when a killed run's record was
    /// found, a description of it (to warn about).
    pub fn acquire(out: &Path, run_id: &str, wait: bool) -> Result<(Lock, Option<String>)> {
        std::fs::create_dir_all(out).at(out)?;
        let path = Out(out).lock();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                if !wait {
                    return Err(Error::Locked(format!(
                        "{} is locked by another migstat run ({holder}); wait for it, or pass --wait",
                        out.display()
                    )));
                }
                tracing::warn!(holder = %holder, "output directory locked; waiting");
                file.lock().at(&path)?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let stale = {
            let h = read_holder(&mut file);
            (!h.is_empty()).then_some(h)
        };
        let me = format!(
            "pid {}, started {}, run {run_id}",
            std::process::id(),
            process_start(std::process::id()).unwrap_or_else(|| "at an unknown time".into())
        );
        file.set_len(0).at(&path)?;
        file.rewind().at(&path)?;
        file.write_all(me.as_bytes()).at(&path)?;
        file.sync_all().at(&path)?;
        Ok((Lock { file }, stale))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // An empty record says the last holder finished cleanly; the kernel drops the lock.
        let _ = self.file.set_len(0);
        let _ = self.file.sync_all();
    }
}

fn read_holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    s.trim().to_string()
}

/// A process's start time from `/proc` (Linux), as seconds since boot: with the pid it tells a
/// live holder from a reused pid.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command name, which may hold spaces but ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some(format!("{:.2} s after boot", ticks as f64 / 100.0))
}

/// Remove what a killed run left: staging directories and a half-made `current` symlink.
pub fn clean_leftovers(out: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let staging = Out(out).staging_root();
    if staging.is_dir() {
        for e in std::fs::read_dir(&staging).at(&staging)? {
            let p = e.at(&staging)?.path();
            std::fs::remove_dir_all(&p).at(&p)?;
            removed.push(p);
        }
    }
    let tmp = Out(out).current_tmp();
    if tmp.symlink_metadata().is_ok() {
        std::fs::remove_file(&tmp).at(&tmp)?;
        removed.push(tmp);
    }
    Ok(removed)
}

/// Publish the finished `staging` directory as release `run_id` and make it current; then keep
/// the newest `keep` releases. Returns the releases removed.
pub fn publish(out: &Path, staging: &Path, run_id: &str, keep: usize) -> Result<Vec<String>> {
    let releases = releases_dir(out);
    std::fs::create_dir_all(&releases).at(&releases)?;
    sync_tree(staging)?;
    let release = releases.join(run_id);
    std::fs::rename(staging, &release).at(&release)?;
    sync_dir(&releases)?;
    fault("before_switch");
    let tmp = Out(out).current_tmp();
    if tmp.symlink_metadata().is_ok() {
        std::fs::remove_file(&tmp).at(&tmp)?;
    }
    std::os::unix::fs::symlink(Out::current_target(run_id), &tmp).at(&tmp)?;
    fault("mid_switch");
    let current = current(out);
    std::fs::rename(&tmp, &current).at(&current)?;
    sync_dir(out)?;
    fault("after_switch");
    prune(out, keep)
}

/// The run id `current` points to.
pub fn current_id(out: &Path) -> Option<String> {
    let target = std::fs::read_link(current(out)).ok()?;
    Some(target.file_name()?.to_string_lossy().to_string())
}

/// Remove the oldest releases so that `keep` remain; never the current one. Run ids start with
/// their UTC start time, so name order is age order.
pub fn prune(out: &Path, keep: usize) -> Result<Vec<String>> {
    let releases = releases_dir(out);
    let current = current_id(out);
    let mut ids: Vec<String> = std::fs::read_dir(&releases)
        .at(&releases)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    ids.sort();
    let mut removed = Vec::new();
    let mut left = ids.len();
    for id in ids {
        if left <= keep.max(1) {
            break;
        }
        if Some(&id) == current.as_ref() {
            continue;
        }
        let p = releases.join(&id);
        std::fs::remove_dir_all(&p).at(&p)?;
        removed.push(id);
        left -= 1;
    }
    Ok(removed)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Flush every file and directory under `dir` to disk before it is published: the files of a
/// directory side by side (a release has hundreds; the disk takes concurrent flushes together),
/// then the directory itself.
fn sync_tree(dir: &Path) -> Result<()> {
    use rayon::prelude::*;
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).at(dir)? {
        let p = e.at(dir)?.path();
        if p.is_dir() {
            dirs.push(p);
        } else {
            files.push(p);
        }
    }
    files
        .par_iter()
        .try_for_each(|p| File::open(p).and_then(|f| f.sync_all()).at(p))?;
    dirs.par_iter().try_for_each(|d| sync_tree(d))?;
    sync_dir(dir)
}

/// A release's manifest (a usage error when the directory holds none, or another file).
pub fn read_manifest(release: &Path) -> Result<crate::manifest::Manifest> {
    let manifest_path = Release(release).manifest();
    let text = std::fs::read_to_string(&manifest_path).at(&manifest_path)?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Usage(format!(
            "{}: not a migstat manifest ({e})",
            manifest_path.display()
        ))
    })
}

/// Check a release against its manifest: every listed file present with its size and blake3,
/// and no file that the manifest does not list. Returns the problems (empty: intact).
pub fn verify(release: &Path) -> Result<Vec<String>> {
    let m = read_manifest(release)?;
    let mut problems = Vec::new();
    let mut listed = std::collections::BTreeSet::new();
    for f in &m.outputs {
        listed.insert(f.path.clone());
        let p = release.join(&f.path);
        match std::fs::metadata(&p) {
            Err(_) => problems.push(format!("{}: missing", f.path)),
            Ok(meta) if meta.len() != f.bytes => problems.push(format!(
                "{}: {} bytes, the manifest says {}",
                f.path,
                meta.len(),
                f.bytes
            )),
            Ok(_) => {
                let (_, h) = crate::manifest::hash_file(&p)?;
                if h != f.blake3 {
                    problems.push(format!(
                        "{}: blake3 {h}, the manifest says {}",
                        f.path, f.blake3
                    ));
                }
            }
        }
    }
    let mut found = Vec::new();
    list_files(release, release, &mut found)?;
    for f in found {
        if f != crate::layout::MANIFEST && !listed.contains(&f) {
            problems.push(format!("{f}: not listed in the manifest"));
        }
    }
    Ok(problems)
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir).at(dir)? {
        let p = e.at(dir)?.path();
        if p.is_dir() {
            list_files(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Append a record to the history (one line, flushed to disk).
pub fn append_history(out: &Path, record: &HistoryRecord) -> Result<()> {
    std::fs::create_dir_all(out).at(out)?;
    let path = history_path(out);
    let mut line = serde_json::to_string(record)
        .map_err(|e| Error::Internal(format!("serialising the run history: {e}")))?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .at(&path)?;
    // A run killed while appending leaves a line without its end: start a new line after it.
    let len = f.metadata().at(&path)?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(std::io::SeekFrom::Start(len - 1)).at(&path)?;
        f.read_exact(&mut last).at(&path)?;
        if last[0] != b'\n' {
            line.insert(0, '\n');
        }
    }
    f.write_all(line.as_bytes()).at(&path)?;
    f.sync_all().at(&path)
}

/// The history's records, oldest first (a line that does not parse — a run killed while
/// appending — is skipped).
pub fn read_history(out: &Path) -> Result<Vec<HistoryRecord>> {
    // A mistyped directory is an error, not an empty history (cron would report "no runs").
    if !out.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not an output directory (give the --out of `migstat run`)",
            out.display()
        )));
    }
    let path = history_path(out);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The latest `n` runs as a table for people.
pub fn history_table(records: &[HistoryRecord], n: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:<20} {:<11} {:>4} {:>10} {:>10} {:>11} {:>7}  notes",
        "run", "started (UTC)", "status", "exit", "read", "accepted", "quarantined", "seconds"
    );
    for r in records.iter().rev().take(n) {
        let sum = |f: fn(&SourceHistory) -> u64| r.sources.iter().map(f).sum::<u64>();
        // The run's wall time, start to finish (every stage: sources, tables, protection,
        // documents, publishing); the stages' own sum where the times do not parse.
        let wall = chrono::DateTime::parse_from_rfc3339(&r.started_at)
            .ok()
            .zip(chrono::DateTime::parse_from_rfc3339(&r.finished_at).ok())
            .map(|(a, b)| (b - a).num_milliseconds() as f64 / 1000.0);
        let seconds: f64 = wall.unwrap_or_else(|| r.seconds.values().sum::<f64>()) + 0.0;
        let reused: Vec<&str> = r
            .sources
            .iter()
            .filter(|s| s.reused)
            .map(|s| s.id.as_str())
            .collect();
        let mut notes = Vec::new();
        if !reused.is_empty() {
            notes.push(format!("reused {}", reused.join(", ")));
        }
        if let Some(e) = &r.error {
            notes.push(
                e.lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(100)
                    .collect(),
            );
        }
        let _ = writeln!(
            s,
            "{:<28} {:<20} {:<11} {:>4} {:>10} {:>10} {:>11} {:>7.1}  {}",
            r.run_id,
            r.started_at
                .get(..19)
                .unwrap_or(&r.started_at)
                .replace('T', " "),
            r.status,
            r.exit_code,
            sum(|s| s.rows_read),
            sum(|s| s.rows_accepted),
            sum(|s| s.rows_quarantined),
            seconds,
            notes.join("; ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_seconds_are_the_whole_run() {
        // 53 s from start to finish, 0.2 s of it reading: the table shows 53, not the
        // stages it happens to time.
        let r = HistoryRecord {
            run_id: "r".into(),
            pipeline_id: "p".into(),
            started_at: "2026-12-04T02:30:00Z".into(),
            finished_at: "2026-12-04T02:30:53Z".into(),
            status: crate::manifest::RunStatus::Succeeded,
            exit_code: 0,
            error: None,
            sources: Vec::new(),
            tables_published: Vec::new(),
            seconds: [("source:a".to_string(), 0.2)].into_iter().collect(),
        };
        let t = history_table(&[r], 5);
        let row = t.lines().nth(1).unwrap();
        assert!(row.contains(" 53.0"), "{row}");
    }

    #[test]
    fn pruning_keeps_the_newest_and_never_the_current() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        for id in [
            "20260101T000000Z-a",
            "20260102T000000Z-b",
            "20260103T000000Z-c",
        ] {
            std::fs::create_dir_all(releases_dir(out).join(id)).unwrap();
        }
        // The oldest is current (a rollback): it stays, the middle one goes.
        std::os::unix::fs::symlink("releases/20260101T000000Z-a", current(out)).unwrap();
        let removed = prune(out, 2).unwrap();
        assert_eq!(removed, ["20260102T000000Z-b"]);
        assert!(releases_dir(out).join("20260101T000000Z-a").is_dir());
        assert!(releases_dir(out).join("20260103T000000Z-c").is_dir());
        assert_eq!(current_id(out).as_deref(), Some("20260101T000000Z-a"));
    }

    #[test]
    fn a_second_lock_is_refused_and_a_dead_holder_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let (first, stale) = Lock::acquire(d.path(), "r1", false).unwrap();
        assert_eq!(stale, None);
        match Lock::acquire(d.path(), "r2", false) {
            Err(Error::Locked(m)) => assert!(m.contains("run r1"), "{m}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        drop(first);
        // A record left by a holder that never cleaned up (killed): taken over, reported.
        std::fs::write(
            d.path().join(".lock"),
            "pid 999999, started 1.00 s after boot, run r0",
        )
        .unwrap();
        let (_l, stale) = Lock::acquire(d.path(), "r3", false).unwrap();
        assert_eq!(
            stale.as_deref(),
            Some("pid 999999, started 1.00 s after boot, run r0")
        );
    }

    #[test]
    fn history_lines_round_trip_and_a_torn_line_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let r = HistoryRecord {
            run_id: "r1".into(),
            pipeline_id: "p".into(),
            started_at: "2026-11-22T01:00:00Z".into(),
            finished_at: "2026-11-22T01:00:05Z".into(),
            status: crate::manifest::RunStatus::Succeeded,
            exit_code: 0,
            error: None,
            sources: vec![],
            tables_published: vec!["t".into()],
            seconds: Default::default(),
        };
        append_history(d.path(), &r).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(history_path(d.path()))
            .unwrap();
        f.write_all(b"{\"run_id\": \"torn").unwrap();
        append_history(d.path(), &r).unwrap();
        assert_eq!(read_history(d.path()).unwrap(), vec![r.clone(), r]);
    }
}
