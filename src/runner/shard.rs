//! The source pass sharded: each delivery file of a source validated and harmonized as a task of
//! its own (in a `migstat shard` process, a thread of this one, or a task of an engine that runs
//! shards: `Engine::pass_shards`; a process or engine task passes a run of consecutive files,
//! `engine::batches`), then put together on the coordinator as one pass over the files would
//! have left them.
//!
//! Input: the plan, a source, a file index, the file's identity as hashed when the run began,
//! and a directory of the run's staging area. Output, in that directory: the file's accepted
//! rows (`accepted.parquet`, typed and with the key-value metadata one pass gives its part), its
//! quarantine (`quarantine.parquet`),
//! every key of its key sets as sorted runs (`keys/`; or one key table, for an engine that
//! groups keys) and `outcome.json` (a [`ShardOutcome`]: the file's row accounting, unmapped
//! values and where its keys are). The coordinator (`source::run_source`) finds the keys seen
//! again in a later file (merging the runs of all shards in file order, or from the engine's
//! group-by on the key tables) — a key's first occurrence is its first in file order, as in one
//! pass — moves each shard's accepted rows in as its file's part of the source's accepted records
//! (taking those rows out of the parts that hold one, into the quarantine), and sums the
//! accounting.

use super::*;
use crate::engine::ShardTask;
use crate::harmonize::UnmappedValue;
use crate::validate::KeyRuns;
use serde::{Deserialize, Serialize};

/// The file a shard writes its [`ShardOutcome`] to, in its directory, once it is done.
const OUTCOME: &str = "outcome.json";

/// What a shard left for the coordinator (`outcome.json` in its directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardOutcome {
    /// The file's index among its source's files.
    pub file: usize,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_quarantined: u64,
    /// Quarantine rows per rule (`Rule::as_str`).
    pub by_rule: BTreeMap<String, u64>,
    /// Every unmapped raw value the file had, uncapped (the coordinator lists the top ones).
    pub unmapped: Vec<UnmappedValue>,
    /// Where the file's keys are.
    pub keys: KeyRuns,
    /// The accepted part as written (its path relative to the shard's directory): its rows,
    /// bytes and blake3, so that the coordinator need not read a part it moves in as it is.
    pub part: OutputFile,
}

/// How the files of a source are passed (`migstat run --shards N`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Shards {
    /// One pass over the files, in this process (the default).
    #[default]
    Off,
    /// Each file on a thread of this process, `n` at a time.
    Threads(usize),
    /// Each file in a `migstat shard` process started from `exe`, `at_once` at a time.
    Processes { exe: PathBuf, at_once: usize },
}

/// A shard's directory in the staging area.
pub(super) fn shard_dir(staging: &Path, source: &str, file: usize) -> PathBuf {
    staging
        .join(".shards")
        .join(source)
        .join(format!("{file:06}"))
}

/// The names of `src`'s files ([`file_names`]) under `plan`'s spec directory.
fn names_of(src: &SourcePlan, plan: &Plan) -> Vec<String> {
    file_names(src, plan.spec_path.parent().unwrap_or(Path::new(".")))
}

/// Where the shards of a source write their key tables, for an engine that groups them.
pub(super) fn key_tables(staging: &Path, source: &str) -> PathBuf {
    staging.join(".shards").join(source).join("keys")
}

/// The key-value metadata of the accepted records' part of one delivery file (`name`, its
/// blake3): the same whichever process wrote the part.
pub(super) fn part_metadata(
    plan: &Plan,
    src: &SourcePlan,
    name: &str,
    blake3: &str,
) -> Vec<(String, String)> {
    vec![
        ("migstat_version".to_string(), crate::VERSION.to_string()),
        ("pipeline_id".to_string(), plan.pipeline_id.clone()),
        ("pipeline_hash".to_string(), plan.spec_hash.clone()),
        ("source_id".to_string(), src.id.clone()),
        ("input_blake3".to_string(), format!("{name}={blake3}")),
    ]
}

/// The accepted rows a shard wrote.
pub(super) fn accepted_part(dir: &Path) -> PathBuf {
    dir.join("accepted.parquet")
}

/// The quarantine a shard wrote.
pub(super) fn quarantine_part(dir: &Path) -> PathBuf {
    dir.join("quarantine.parquet")
}

/// The names a source's files go by in messages, the quarantine and the accepted rows' `_file`:
/// relative to the spec's directory, so they do not change with the working directory.
pub(super) fn file_names(src: &SourcePlan, spec_dir: &Path) -> Vec<String> {
    let spec_dir = clean_path(spec_dir);
    src.files
        .iter()
        .map(|f| {
            source::relative_to(&clean_path(f), &spec_dir)
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect()
}

/// A source's running row accounting, chunk by chunk.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) read: u64,
    pub(super) bad: u64,
    pub(super) good: u64,
    pub(super) by_rule: BTreeMap<Rule, u64>,
}

impl Tally {
    /// Count a validated chunk, harmonize its accepted rows and write its quarantine: the rows
    /// accepted in the end.
    pub(super) fn take(
        &mut self,
        v: ValidatedChunk,
        harmonizer: &mut Harmonizer<'_>,
        quarantined: &mut ParquetSink,
    ) -> Result<polars::prelude::DataFrame> {
        self.read += v.rows_read;
        self.bad += v.rows_quarantined;
        for (r, n) in v.by_rule {
            *self.by_rule.entry(r).or_default() += n;
        }
        quarantined.write(v.quarantine)?;
        let rows = if harmonizer.is_empty() {
            v.accepted
        } else {
            let h = harmonizer.apply(v.accepted, v.labels.as_deref())?;
            self.bad += h.rows_quarantined;
            for (r, n) in h.by_rule {
                *self.by_rule.entry(r).or_default() += n;
            }
            quarantined.write(h.quarantine)?;
            h.accepted
        };
        self.good += rows.height() as u64;
        Ok(rows)
    }

    /// Add a shard's accounting.
    pub(super) fn add(&mut self, o: &ShardOutcome) -> Result<()> {
        self.read += o.rows_read;
        self.bad += o.rows_quarantined;
        self.good += o.rows_accepted;
        for (name, n) in &o.by_rule {
            let rule = Rule::ALL
                .into_iter()
                .find(|r| r.as_str() == name)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "a shard of file {} counted an unknown rule `{}`",
                        o.file,
                        crate::error::cap_bytes(name, 64)
                    ))
                })?;
            *self.by_rule.entry(rule).or_default() += n;
        }
        Ok(())
    }
}

/// Validate and harmonize file `file` of `src` on its own into `dir` (see the module's doc).
/// `names` are the source's file names as the coordinator gives them ([`file_names`]);
/// `identity` is the file's size and blake3 as hashed when the run began (a file that changed
/// since is an error).
pub fn pass_file(
    plan: &Plan,
    src: &SourcePlan,
    names: Vec<String>,
    file: usize,
    identity: (u64, String),
    dir: &Path,
    key_table: Option<&Path>,
) -> Result<ShardOutcome> {
    if file >= src.files.len() {
        return Err(Error::Usage(format!(
            "source `{}` has {} files; there is no file {file}",
            src.id,
            src.files.len()
        )));
    }
    // What an earlier attempt left is not this shard's.
    if dir.exists() {
        std::fs::remove_dir_all(dir).at(dir)?;
    }
    std::fs::create_dir_all(dir).at(dir)?;
    if names.len() != src.files.len() {
        return Err(Error::Usage(format!(
            "source `{}` has {} files here, {} where the run began: give every process the same spec and deliveries",
            src.id,
            src.files.len(),
            names.len()
        )));
    }
    let metadata = part_metadata(plan, src, &names[file], &identity.1);
    let mut validator = Validator::new(&src.id, &src.schema, names)
        .spill_to(dir.join("keys"), crate::validate::key_window());
    let mut harmonizer = Harmonizer::new(plan, src);
    let mut schema = validator.accepted_schema();
    harmonizer.extend_write_schema(&mut schema);
    let mut accepted = ParquetSink::create(&accepted_part(dir), &schema, &metadata)?;
    let mut quarantined = ParquetSink::create(&quarantine_part(dir), &quarantine::schema(), &[])?;
    let mut chunks = FileChunks::open(src, file, plan.chunk_rows, identity)?;
    let mut tally = Tally::default();
    while let Some(chunk) = chunks.next_chunk()? {
        crate::interrupt::check()?;
        let v = validator.validate(chunk)?;
        let rows = tally.take(v, &mut harmonizer, &mut quarantined)?;
        accepted.write(rows)?;
    }
    let acc = accepted.finish(dir)?;
    quarantined.finish(dir)?;
    if acc.rows != tally.good {
        return Err(Error::Internal(format!(
            "source `{}` file {file}: {} accepted rows counted, {} written",
            src.id, tally.good, acc.rows
        )));
    }
    let outcome = ShardOutcome {
        file,
        rows_read: tally.read,
        rows_accepted: tally.good,
        rows_quarantined: tally.bad,
        by_rule: tally
            .by_rule
            .into_iter()
            .map(|(r, n)| (r.as_str().to_string(), n))
            .collect(),
        unmapped: harmonizer.unmapped_all(),
        keys: match key_table {
            None => validator.into_runs()?,
            Some(path) => validator.into_runs()?.into_table(file, path)?,
        },
        part: acc,
    };
    let json = serde_json::to_vec(&outcome)
        .map_err(|e| Error::Internal(format!("serialising a shard's outcome: {e}")))?;
    write_atomic(&dir.join(OUTCOME), &json)?;
    Ok(outcome)
}

/// What a shard run by an engine replies ([`run_tasks`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Done(Box<ShardOutcome>),
    /// The shard's error and the exit code it calls for.
    Failed {
        message: String,
        code: i32,
    },
}

/// Several files of one source passed one after the other by one process, the spec compiled
/// once (the tasks share the spec, its hash and the source: a batch of `migstat shard`); the
/// first failure fails them.
pub fn pass_tasks(tasks: &[ShardTask]) -> Result<Vec<ShardOutcome>> {
    pass_each(tasks).into_iter().collect()
}

/// Each task's outcome in order, up to and including the first that failed (the rest are not
/// run): the spec compiled once.
fn pass_each(tasks: &[ShardTask]) -> Vec<Result<ShardOutcome>> {
    let Some(task) = tasks.first() else {
        return Vec::new();
    };
    let compiled = (|| {
        if tasks.iter().any(|t| {
            t.spec != task.spec || t.spec_hash != task.spec_hash || t.source != task.source
        }) {
            return Err(Error::Internal(
                "a batch of shards of different specs or sources".into(),
            ));
        }
        let plan = crate::spec::compile(&task.spec)?;
        if plan.spec_hash != task.spec_hash {
            return Err(Error::Usage(format!(
                "{}: the spec changed since the run compiled it (content hash {} here, {} there)",
                task.spec.display(),
                plan.spec_hash,
                crate::error::cap_bytes(&task.spec_hash, 80)
            )));
        }
        if !plan.sources.iter().any(|s| s.id == task.source) {
            return Err(Error::Usage(format!(
                "{}: no source `{}`",
                task.spec.display(),
                crate::error::cap_bytes(&task.source, 80)
            )));
        }
        Ok(plan)
    })();
    let plan = match compiled {
        Ok(plan) => plan,
        Err(e) => return vec![Err(e)],
    };
    let Some(src) = plan.sources.iter().find(|s| s.id == task.source) else {
        return vec![Err(Error::Internal("a source compiled away".into()))];
    };
    let names = match task.names.is_empty() {
        true => names_of(src, &plan),
        false => task.names.clone(),
    };
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        let outcome = pass_file(
            &plan,
            src,
            names.clone(),
            task.file,
            (task.bytes, task.blake3.clone()),
            &task.dir,
            task.key_table.as_deref(),
        );
        let failed = outcome.is_err();
        out.push(outcome);
        if failed {
            break;
        }
    }
    out
}

/// [`pass_tasks`] as an engine's task runs it ([`crate::engine::ShardPass`]): a reply per
/// task as JSON text, a failure included (with its exit code), so that the coordinator fails
/// the run as one pass would; the tasks after a failed one reply that they were not run.
pub fn run_tasks(tasks: &[ShardTask]) -> Vec<String> {
    let reply = |r: Reply| {
        serde_json::to_string(&r).unwrap_or_else(|e| {
            format!(r#"{{"failed":{{"message":"serialising a shard's reply: {e}","code":70}}}}"#)
        })
    };
    let mut out: Vec<String> = Vec::with_capacity(tasks.len());
    let mut failed: Option<(usize, i32)> = None;
    for (task, outcome) in tasks.iter().zip(pass_each(tasks)) {
        out.push(reply(match outcome {
            Ok(o) => Reply::Done(Box::new(o)),
            Err(e) => {
                failed = Some((task.file, e.exit_code()));
                Reply::Failed {
                    message: crate::error::cap_bytes(&e.to_string(), LOG_TAIL),
                    code: e.exit_code(),
                }
            }
        }));
    }
    let (file, code) = failed.unwrap_or((0, crate::error::exit::INTERNAL));
    for _ in out.len()..tasks.len() {
        out.push(reply(Reply::Failed {
            message: format!("not passed: file {file} of the same task failed first"),
            code,
        }));
    }
    out
}

/// A shard's outcome as it left it in `dir`.
pub fn read_outcome(dir: &Path) -> Result<ShardOutcome> {
    let path = dir.join(OUTCOME);
    let bytes = std::fs::read(&path).at(&path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("{}: not a shard's outcome ({e})", path.display())))
}

/// Pass every file of `src` as a shard, as `how` says, and return their outcomes in file order.
/// `identities` are the files' (size, blake3) as hashed when the run began.
pub(super) fn run_shards(
    plan: &Plan,
    src: &SourcePlan,
    identities: &[(u64, String)],
    staging: &Path,
    how: &Shards,
    engine: &dyn crate::engine::Engine,
) -> Result<Vec<ShardOutcome>> {
    let files: Vec<usize> = (0..src.files.len()).collect();
    // The engine's own tasks when it runs shards (executors resolve no relative path).
    let root = std::path::absolute(staging).map_err(|e| Error::io(staging, e))?;
    let spec = std::path::absolute(&plan.spec_path).map_err(|e| Error::io(&plan.spec_path, e))?;
    let tasks: Vec<ShardTask> = files
        .iter()
        .map(|&file| ShardTask {
            spec: spec.clone(),
            spec_hash: plan.spec_hash.clone(),
            source: src.id.clone(),
            names: names_of(src, plan),
            file,
            dir: shard_dir(&root, &src.id, file),
            bytes: identities[file].0,
            blake3: identities[file].1.clone(),
            key_table: engine
                .groups_keys()
                .then(|| key_tables(&root, &src.id).join(format!("{file:06}.parquet"))),
        })
        .collect();
    let work = root.join(".shards").join(&src.id);
    if let Some(replies) = engine.pass_shards(&tasks, &work) {
        let mut outcomes = Vec::with_capacity(tasks.len());
        for text in replies? {
            match serde_json::from_str::<Reply>(&text) {
                Ok(Reply::Done(o)) => outcomes.push(*o),
                Ok(Reply::Failed { message, code }) => {
                    return Err(Error::Shard(
                        format!(
                            "a shard of source `{}` failed on {}: {message}",
                            src.id,
                            engine.name()
                        ),
                        code,
                    ));
                }
                Err(e) => {
                    return Err(Error::Engine(format!(
                        "source `{}`: a shard's reply is not one ({e})",
                        src.id
                    )));
                }
            }
        }
        outcomes.sort_by_key(|o| o.file);
        return check_files(src, outcomes);
    }
    let outcomes = match how {
        Shards::Off | Shards::Threads(_) => {
            let n = match how {
                Shards::Threads(n) => (*n).max(1),
                _ => 1,
            };
            let chunks: Vec<Vec<usize>> = files.chunks(n).map(<[usize]>::to_vec).collect();
            let mut out = Vec::new();
            for batch in chunks {
                out.extend(crate::parallel::map(batch, |file| {
                    pass_file(
                        plan,
                        src,
                        names_of(src, plan),
                        file,
                        identities[file].clone(),
                        &shard_dir(staging, &src.id, file),
                        None,
                    )
                }));
            }
            out.into_iter().collect::<Result<Vec<_>>>()?
        }
        Shards::Processes { exe, at_once } => {
            processes(plan, src, identities, staging, exe, (*at_once).max(1))?
        }
    };
    check_files(src, outcomes)
}

/// The outcomes, one per file of `src` in file order, or an error.
fn check_files(src: &SourcePlan, outcomes: Vec<ShardOutcome>) -> Result<Vec<ShardOutcome>> {
    if outcomes.len() != src.files.len() {
        return Err(Error::Internal(format!(
            "source `{}`: {} shards replied for {} files",
            src.id,
            outcomes.len(),
            src.files.len()
        )));
    }
    for (i, o) in outcomes.iter().enumerate() {
        if o.file != i {
            return Err(Error::Internal(format!(
                "source `{}`: the shard of file {i} reported file {}",
                src.id, o.file
            )));
        }
    }
    Ok(outcomes)
}

/// The most bytes of a failed shard's log an error quotes (its end).
const LOG_TAIL: usize = 1000;

/// How many `migstat shard` processes the files are shared out to, per process at a time: a
/// process starting (and compiling the spec) costs tens of milliseconds, so many small files
/// are passed several to a process, while a few large ones still get one each.
const BATCHES_PER_PROCESS: usize = 4;

/// At most this many files to a `migstat shard` process: each takes four arguments (about 200
/// bytes), and a command line is bounded (Linux: 2 MiB in all).
const FILES_PER_PROCESS: usize = 1000;

/// The runs of consecutive files (of `sizes` bytes) passed by one `migstat shard` process each,
/// `at_once` processes at a time: four runs per process at a time, of at most
/// [`FILES_PER_PROCESS`] files.
fn process_runs(sizes: &[u64], at_once: usize) -> Vec<std::ops::Range<usize>> {
    crate::engine::batches(
        sizes,
        at_once
            .saturating_mul(BATCHES_PER_PROCESS)
            .max(sizes.len().div_ceil(FILES_PER_PROCESS)),
    )
}

/// The files in `migstat shard` processes, `at_once` at a time, each process passing a run
/// of consecutive files ([`crate::engine::batches`]); their outcomes in file order. A failed
/// shard stops the others and names its file and the end of its log; SIGTERM or SIGINT stops
/// them all.
fn processes(
    plan: &Plan,
    src: &SourcePlan,
    identities: &[(u64, String)],
    staging: &Path,
    exe: &Path,
    at_once: usize,
) -> Result<Vec<ShardOutcome>> {
    use std::process::{Child, Command, Stdio};
    let sizes: Vec<u64> = identities.iter().map(|f| f.0).collect();
    let runs = process_runs(&sizes, at_once);
    tracing::info!(source = %src.id, files = sizes.len(), processes = runs.len(), at_once, "files passed in shard processes");
    let mut next = 0usize;
    let mut running: Vec<(std::ops::Range<usize>, Child)> = Vec::new();
    let stop = |running: &mut Vec<(std::ops::Range<usize>, Child)>| {
        for (_, c) in running.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    };
    loop {
        while running.len() < at_once && next < runs.len() {
            let run = runs[next].clone();
            let mut command = Command::new(exe);
            command
                .arg("-q")
                .arg("shard")
                .arg(&plan.spec_path)
                .args(["--source", &src.id])
                .args(["--spec-hash", &plan.spec_hash]);
            for file in run.clone() {
                let dir = shard_dir(staging, &src.id, file);
                std::fs::create_dir_all(&dir).at(&dir)?;
                let (bytes, blake3) = &identities[file];
                command
                    .args(["--file", &file.to_string()])
                    .arg("--dir")
                    .arg(&dir)
                    .args(["--bytes", &bytes.to_string(), "--blake3", blake3]);
            }
            let log = shard_dir(staging, &src.id, run.start).with_extension("log");
            let log_file = std::fs::File::create(&log).at(&log)?;
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn();
            match child {
                Ok(c) => running.push((run, c)),
                Err(e) => {
                    stop(&mut running);
                    return Err(Error::Usage(format!(
                        "could not start `{} shard` for file {} of source `{}`: {e}",
                        exe.display(),
                        run.start,
                        src.id
                    )));
                }
            }
            next += 1;
        }
        if running.is_empty() {
            break;
        }
        if let Err(e) = crate::interrupt::check() {
            stop(&mut running);
            return Err(e);
        }
        let mut i = 0;
        let mut finished = false;
        while i < running.len() {
            let status = running[i].1.try_wait();
            match status {
                Ok(None) => i += 1,
                Ok(Some(s)) => {
                    let (run, _) = running.swap_remove(i);
                    finished = true;
                    if !s.success() {
                        stop(&mut running);
                        let log = shard_dir(staging, &src.id, run.start).with_extension("log");
                        // The process passes its files in order: the failed one is the first
                        // without an outcome.
                        let file = run
                            .clone()
                            .find(|&f| !shard_dir(staging, &src.id, f).join(OUTCOME).is_file())
                            .unwrap_or(run.start);
                        let tail = std::fs::read(&log)
                            .map(|b| {
                                let text = String::from_utf8_lossy(&b).into_owned();
                                let start = text.len().saturating_sub(LOG_TAIL);
                                let start = (start..=text.len())
                                    .find(|&k| text.is_char_boundary(k))
                                    .unwrap_or(text.len());
                                let mark = if start > 0 { "…" } else { "" };
                                let said = text[start..].trim();
                                format!("{mark}{}", said.strip_prefix("error: ").unwrap_or(said))
                            })
                            .unwrap_or_default();
                        return Err(Error::Shard(
                            format!(
                                "the shard of file {file} ({}) of source `{}` failed ({s}): {tail}",
                                names_of(src, plan)[file],
                                src.id
                            ),
                            s.code()
                                .filter(|c| *c != 0)
                                .unwrap_or(crate::error::exit::RUNTIME),
                        ));
                    }
                }
                Err(e) => {
                    stop(&mut running);
                    return Err(Error::Internal(format!("waiting for a shard: {e}")));
                }
            }
        }
        if !finished {
            // Waiting only: no work is bounded by this.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    (0..src.files.len())
        .map(|file| read_outcome(&shard_dir(staging, &src.id, file)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_passes_at_most_a_thousand_files() {
        // 12 equal files, 2 at a time: 8 runs. 2,500 files, 2 at a time: still 8 runs (313 or
        // 312 files each). 10,000 files, 1 at a time: 10 runs of 1,000, not 4 of 2,500.
        assert_eq!(process_runs(&[34; 12], 2).len(), 8);
        let runs = process_runs(&[1; 2_500], 2);
        assert_eq!(runs.len(), 8);
        assert!(
            runs.iter().all(|r| (312..=313).contains(&r.len())),
            "{runs:?}"
        );
        let runs = process_runs(&[1; 10_000], 1);
        assert_eq!(runs.len(), 10);
        assert!(runs.iter().all(|r| r.len() == 1_000), "{runs:?}");
    }
}
