//! The distributed engine (cargo feature `distributed`): a table's finest cells computed by an
//! Apache Ballista cluster (DataFusion plans on a scheduler and its executors), and the
//! scheduler and executor processes themselves, embedded in the `migstat` binary so that the
//! cluster runs exactly the DataFusion and Ballista versions this build plans for.
//!
//! Input: the accepted Parquet file of a source (on storage every executor can read at the same
//! path), a table's definition. Output: [`PeriodCells`], the same values as [`Local`] computes.
//!
//! What runs where. The cluster scans the accepted records in parallel, applies the table's
//! filter and, for the cell key method, each record's key, places each record in its period
//! (the local placement as a `CASE` over day numbers: [`period_case`]) and groups them by
//! period and the table's dimensions: one row per (period, cell) with its count and key sum
//! comes back, by the Arrow C Data Interface into polars, where
//! [`crate::disaggregate::add_grouped`] adds them and the records outside every period. Tables of persons (their units need every record of a person) are
//! shuffled by a hash of the person into buckets, and each bucket's units and cells are made by
//! migstat's own code inside an executor ([`PersonCells`], on the spec the executor compiles from
//! the same path); one partial per bucket comes back. A survey's sums are one task per accepted
//! part ([`SurveySumsFn`]: [`Local`] on that part inside the executor), the parts' partials
//! merged on the coordinator in file order, as the local path merges them. A sharded source pass runs each delivery file as a task
//! ([`SourcePass`], the runner's shard code handed to the executor by the binary) and finds the
//! keys repeated across files with a group-by on the shards' key tables
//! ([`Engine::repeated_keys`]).
//!
//! The protection secret never leaves the processes that hold it: a plan names the function
//! `migstat_record_key(id, fingerprint)`, whose key each executor loads itself (from
//! `MIGSTAT_PROTECTION_KEY` or `--key-file`); the fingerprint, a one-way derivation of the cell
//! key, makes an executor holding another key fail the query instead of adding the wrong noise.

use std::path::Path;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt64Array};
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::options::ReadOptions;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use polars::prelude::*;

use super::{Accepted, Engine, Local, ShardPass, ShardTask, SurveySums};
use crate::disaggregate::PeriodCells;
use crate::spec::{SourcePlan, TableSpec};
use crate::vocab::raw_column;
use crate::{Error, Result};

/// The name plans call each record's key by.
pub const RECORD_KEY_FN: &str = "migstat_record_key";

/// The name plans call a bucket of persons' finest cells by.
pub const PERSON_CELLS_FN: &str = "migstat_person_cells";

/// The name plans call a record's bucket of persons by.
pub const BUCKET_FN: &str = "migstat_person_bucket";

/// The name plans call a shard of the source pass by (one delivery file validated and
/// harmonized inside an executor).
pub const SOURCE_PASS_FN: &str = "migstat_source_pass";

/// The name plans call the survey sums of an accepted part by ([`SurveySumsFn`]).
pub const SURVEY_SUMS_FN: &str = "migstat_survey_sums";

/// A Ballista cluster, reached through its scheduler (`ballista://HOST:PORT`).
pub struct Ballista {
    url: String,
    runtime: tokio::runtime::Runtime,
    ctx: SessionContext,
}

impl std::fmt::Debug for Ballista {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ballista").field("url", &self.url).finish()
    }
}

fn df_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Engine(format!(
        "{what}: {}",
        crate::error::cap_bytes(&e.to_string(), crate::error::REASON_MAX)
    ))
}

impl Ballista {
    /// Connect to the scheduler at `url` (`ballista://HOST:PORT`).
    pub fn connect(url: &str) -> Result<Self> {
        reachable(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("migstat-ballista")
            .enable_all()
            .build()
            .map_err(|e| df_error("starting the Ballista client", e))?;
        let ctx = runtime.block_on(remote(url, session_config()));
        let ctx = ctx.map_err(|e| {
            df_error(
                &format!(
                    "connecting to the Ballista scheduler at {}; is it running (`migstat engine scheduler`)",
                    crate::error::quote(url)
                ),
                e,
            )
        })?;
        Ok(Ballista {
            url: url.to_string(),
            runtime,
            ctx,
        })
    }

    /// The rows of `sql(name)` over the accepted records (their parts) registered as `name`,
    /// as one polars frame. Each call registers the records under a name of its own, so that
    /// calls from several threads (groups run side by side) never read each other's records.
    fn query(
        &self,
        accepted: &[std::path::PathBuf],
        sql: impl Fn(&str) -> String,
        what: &str,
    ) -> Result<DataFrame> {
        self.query_in(&self.ctx, accepted, sql, what)
    }

    /// [`Ballista::query`] in a session of its own.
    fn query_in(
        &self,
        ctx: &SessionContext,
        accepted: &[std::path::PathBuf],
        sql: impl Fn(&str) -> String,
        what: &str,
    ) -> Result<DataFrame> {
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "accepted_{}",
            CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        // One table over the source's parts (or the Parquet files of a directory), listed by name (one per delivery file, each a
        // file group of the scan: what the executors share out). The executors resolve the
        // paths themselves: never relative to this process's directory.
        let mut urls = Vec::with_capacity(accepted.len());
        for part in accepted {
            let part = std::fs::canonicalize(part).map_err(|e| Error::io(part, e))?;
            let path = part
                .to_str()
                .ok_or_else(|| Error::Engine(format!("{}: not a UTF-8 path", part.display())))?;
            // A directory: every Parquet file in it.
            let path = match part.is_dir() {
                true => format!("{path}/"),
                false => path.to_string(),
            };
            urls.push(ListingTableUrl::parse(path).map_err(|e| df_error(what, e))?);
        }
        let Some(first) = urls.first().cloned() else {
            return Err(Error::Internal(format!(
                "{what}: a source without accepted parts"
            )));
        };
        let sql = sql(&name);
        tracing::debug!(%sql, parts = urls.len(), "planned on the cluster");
        let batches = self.runtime.block_on(async {
            let options = ParquetReadOptions::default()
                .to_listing_options(&ctx.copied_config(), ctx.copied_table_options());
            let schema = options.infer_schema(&ctx.state(), &first).await?;
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(schema);
            ctx.register_table(name.as_str(), Arc::new(ListingTable::try_new(config)?))?;
            let out = match ctx.sql(&sql).await {
                Ok(df) => df.collect().await,
                Err(e) => Err(e),
            };
            let _ = ctx.deregister_table(name.as_str());
            out
        });
        let batches = batches.map_err(|e| df_error(what, e))?;
        to_polars(&batches).map_err(|e| df_error(&format!("{what}: reading the result"), e))
    }
}

/// A session on the scheduler at `url` with `config`, migstat's functions registered for
/// planning (the coordinator never evaluates them: the executors do).
async fn remote(url: &str, config: SessionConfig) -> datafusion::error::Result<SessionContext> {
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let ctx = SessionContext::remote_with_state(url, state).await?;
    register_planning(&ctx);
    Ok(ctx)
}

/// The session of a table of persons split into `buckets`: as many shuffle partitions as
/// buckets (each final task holds about one bucket of records, not a share of the whole
/// table), and no partial aggregation before the shuffle (collecting records per bucket in
/// each scan task would hold every record of the task in memory and reduce nothing).
fn persons_config(buckets: usize) -> SessionConfig {
    let mut config = session_config();
    let execution = &mut config.options_mut().execution;
    execution.target_partitions = buckets.clamp(2, 65_536);
    execution.skip_partial_aggregation_probe_ratio_threshold = 0.0;
    execution.skip_partial_aggregation_probe_rows_threshold = 1;
    config
}

/// Fail early, naming the address, when nothing listens at the scheduler's address (a session
/// connects lazily: without this the first query would be the first to find out).
fn reachable(url: &str) -> Result<()> {
    use std::net::ToSocketAddrs as _;
    let shown = crate::error::quote(url);
    let hostport = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/');
    let addrs: Vec<std::net::SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|e| Error::Usage(format!("--engine {shown}: give ballista://HOST:PORT ({e})")))?
        .collect();
    let timeout = std::time::Duration::from_secs(10);
    if addrs
        .iter()
        .any(|a| std::net::TcpStream::connect_timeout(a, timeout).is_ok())
    {
        Ok(())
    } else {
        Err(Error::Engine(format!(
            "cannot reach the Ballista scheduler at {shown}: is it running (`migstat engine scheduler --bind HOST:PORT`)?"
        )))
    }
}

/// The session configuration of the client, scheduler and executors: Parquet strings read as
/// plain UTF-8 arrays (what polars and the local pass see); each scan partition reads only its
/// own files and byte ranges (DataFusion lets sibling partitions of one process take each
/// other's files, which its documentation says executors running each partition as a task of
/// its own must turn off).
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista();
    let execution = &mut config.options_mut().execution;
    execution.parquet.schema_force_view_types = false;
    execution.enable_file_stream_work_stealing = false;
    config
}

/// A SQL identifier, quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The period of each record's date `column` (a `Date` column) as the plan computes it: the
/// index of the period holding it, or a [`placed_code`] — the same placement as
/// [`crate::spec::Periods::place`] of the local pass, on the dates' day numbers.
fn period_case(column: &str, periods: &crate::spec::period::Periods) -> String {
    use crate::calendar::days_of_date;
    use crate::disaggregate::placed_code::{AFTER, BEFORE, BETWEEN, NO_DATE};
    let d = format!("CAST({} AS INT)", ident(column));
    // A day number outside the calendar's dates is no date, as `calendar::date_of_days` says.
    let (min, max) = (
        days_of_date(chrono::NaiveDate::MIN),
        days_of_date(chrono::NaiveDate::MAX),
    );
    let mut case = format!(
        "CASE WHEN {} IS NULL OR {d} < {min} OR {d} > {max} THEN {NO_DATE}",
        ident(column)
    );
    match (periods.list.first(), periods.list.last()) {
        (Some(first), Some(last)) => {
            case.push_str(&format!(
                " WHEN {d} < {} THEN {BEFORE}",
                days_of_date(first.start)
            ));
            for (i, p) in periods.list.iter().enumerate() {
                case.push_str(&format!(
                    " WHEN {d} BETWEEN {} AND {} THEN {i}",
                    days_of_date(p.start),
                    days_of_date(p.end)
                ));
            }
            case.push_str(&format!(
                " WHEN {d} > {} THEN {AFTER} ELSE {BETWEEN} END",
                days_of_date(last.end)
            ));
        }
        _ => case.push_str(&format!(" ELSE {AFTER} END")),
    }
    case
}

/// The query of a streamed table's (period, cell) counts over the registered file `from`: its
/// filter, its key sums; and the date column it groups by when the records' periods are not
/// placed in the plan (`placed`: the date column is of type `Date` in the accepted file, so
/// the plan places each record in its period; else it groups by the date as read and the
/// coordinator places the dates).
fn grouped_sql(
    source: &SourcePlan,
    table: &TableSpec,
    key: Option<&[u8; 32]>,
    placed: bool,
    from: &str,
) -> (String, Option<String>) {
    let mut select = Vec::new();
    let mut group = Vec::new();
    let mut date = table.periods.date.as_ref().map(|d| raw_column(d));
    if let Some(d) = &date {
        if placed {
            let case = period_case(d, &table.periods);
            select.push(format!(
                "{case} AS {}",
                ident(crate::disaggregate::PERIOD_CODE)
            ));
            group.push(case);
        } else {
            select.push(format!("{} AS {}", ident(d), ident(d)));
            group.push(ident(d));
        }
    }
    if placed {
        date = None;
    }
    for d in &table.dimensions {
        select.push(ident(d));
        group.push(ident(d));
    }
    select.push("COUNT(*) AS n".to_string());
    if let Some((id, k)) = crate::disaggregate::record_keys(source, table, key) {
        select.push(format!(
            "SUM({RECORD_KEY_FN}(CAST({} AS VARCHAR), {})) AS _key",
            ident(&id),
            literal(&fingerprint(&k))
        ));
    }
    let filter = table.filter.as_ref().map(|(column, values)| {
        let list: Vec<String> = values.iter().map(|v| literal(v)).collect();
        if list.is_empty() {
            "FALSE".to_string()
        } else {
            format!("{} IN ({})", ident(column), list.join(", "))
        }
    });
    let mut sql = format!("SELECT {} FROM {}", select.join(", "), ident(from));
    if let Some(f) = &filter {
        sql.push_str(&format!(" WHERE {f}"));
    }
    if !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
    }
    (sql, date)
}

impl Ballista {
    /// A table of persons (stocks, flows, migrations, persons per period) on the cluster: its
    /// records shuffled into buckets by a hash of the person identifier (every record of a
    /// person in one bucket), each bucket's units and finest cells made by migstat's own code
    /// ([`crate::disaggregate::person_cells`]) inside an executor, and one partial per bucket
    /// sent back. `None` when the table cannot run there (no person identifier, a survey
    /// table, or a run without a spec file).
    fn person_cells(
        &self,
        source: &SourcePlan,
        table: &TableSpec,
        accepted: &Accepted,
        key: Option<&[u8; 32]>,
    ) -> Result<Option<PeriodCells>> {
        let (Some(person), Some((spec, spec_hash))) = (&source.person_id, &accepted.spec) else {
            return Ok(None);
        };
        if table.kind.is_survey() {
            return Ok(None);
        }
        // Absolute, but not through links: the executor resolves the spec's relative paths as
        // this process did.
        let spec = std::path::absolute(spec).map_err(|e| Error::io(spec, e))?;
        let spec = spec
            .to_str()
            .ok_or_else(|| Error::Engine(format!("{}: not a UTF-8 path", spec.display())))?
            .to_string();
        let rows = crate::disaggregate::parts_rows(&accepted.parts)?;
        let buckets = rows
            .div_ceil(crate::disaggregate::person_bucket_rows())
            .max(1);
        let keyed = crate::disaggregate::record_keys(source, table, key);
        let fields: Vec<String> = crate::disaggregate::person_columns(source, table, key)
            .iter()
            .map(|c| format!("{}, {}", literal(c), ident(c)))
            .collect();
        let args = [
            literal(&spec),
            literal(&definition(spec_hash, source, table)),
            literal(&source.id),
            literal(&table.id),
            literal(&keyed.map(|(_, k)| fingerprint(&k)).unwrap_or_default()),
        ];
        let sql = |from: &str| {
            format!(
                "SELECT {PERSON_CELLS_FN}({}, array_agg(named_struct({}))) AS cells FROM {} GROUP BY {BUCKET_FN}(CAST({} AS VARCHAR), {buckets})",
                args.join(", "),
                fields.join(", "),
                ident(from),
                ident(&raw_column(person)),
            )
        };
        let what = format!("table {}: persons on {}", table.id, self.url);
        let ctx = self
            .runtime
            .block_on(remote(&self.url, persons_config(buckets)))
            .map_err(|e| df_error(&what, e))?;
        let parts = self.query_in(&ctx, &accepted.parts, sql, &what)?;
        let column = parts
            .column("cells")
            .and_then(|c| c.binary().cloned())
            .map_err(|e| df_error(&what, e))?;
        let mut out = PeriodCells::default();
        for bytes in column.iter() {
            let bytes =
                bytes.ok_or_else(|| Error::Engine(format!("{what}: a bucket without cells")))?;
            out += PeriodCells::from_bytes(bytes)
                .map_err(|e| df_error(&format!("{what}: reading a bucket's cells"), e))?;
        }
        tracing::info!(table = %table.id, buckets, "persons counted on the cluster");
        Ok(Some(out))
    }
}

impl Engine for Ballista {
    fn name(&self) -> String {
        self.url.clone()
    }

    fn counts_while_reading(&self) -> bool {
        false
    }

    fn cells(
        &self,
        source: &SourcePlan,
        table: &TableSpec,
        accepted: &Accepted,
        key: Option<&[u8; 32]>,
    ) -> Result<PeriodCells> {
        if !crate::disaggregate::is_streamed(table) {
            return match self.person_cells(source, table, accepted, key)? {
                Some(cells) => Ok(cells),
                None => {
                    tracing::debug!(table = %table.id, "computed on the coordinator");
                    Local::after_pass().cells(source, table, accepted, key)
                }
            };
        }
        // Records placed in their periods by the plan when their dates are dates: one row per
        // (period, cell) comes back instead of one per (date, cell).
        let placed = table.periods.date.as_ref().is_some_and(|d| {
            accepted.schema.get(&raw_column(d)) == Some(&polars::prelude::DataType::Date)
        });
        let date = grouped_sql(source, table, key, placed, "accepted").1;
        let grouped = self.query(
            &accepted.parts,
            |from| grouped_sql(source, table, key, placed, from).0,
            &format!("table {}: counting on {}", table.id, self.url),
        )?;
        let mut cells = PeriodCells::default();
        crate::disaggregate::add_grouped(table, date.as_deref(), grouped, &mut cells)?;
        Ok(cells)
    }

    fn survey(
        &self,
        source: &SourcePlan,
        tables: &[&TableSpec],
        accepted: &Accepted,
    ) -> Result<SurveySums> {
        self.survey_sums(source, tables, accepted)
    }

    /// Each file a task of the cluster (a job of its own, see [`Ballista::shards`]):
    /// [`SOURCE_PASS_FN`] evaluated inside an executor. Only the replies come back.
    fn pass_shards(&self, tasks: &[ShardTask], work: &Path) -> Option<Result<Vec<String>>> {
        Some(self.shards(tasks, work))
    }

    fn groups_keys(&self) -> bool {
        true
    }

    /// A distributed group-by on the keys of every shard (the cluster repartitions the key
    /// tables by a hash of (key set, key) and counts each key in the partition it lands in),
    /// joined back to the key tables: only the rows of repeated keys come back.
    fn repeated_keys(&self, dir: &Path) -> Result<DataFrame> {
        let what = format!("keys repeated across shards, on {}", self.url);
        let keys = "key_set, k0, k1, k2";
        let sql = |from: &str| {
            let t = ident(from);
            format!(
                "SELECT k.shard, k.key_set, k.k0, k.k1, k.k2, k.pos FROM {t} k \
                 JOIN (SELECT {keys} FROM {t} GROUP BY {keys} HAVING COUNT(*) > 1) d \
                 ON k.key_set = d.key_set AND k.k0 = d.k0 AND k.k1 = d.k1 AND k.k2 = d.k2"
            )
        };
        let repeated = self.query(&[dir.to_path_buf()], sql, &what)?;
        tracing::info!(
            rows = repeated.height(),
            "keys repeated across shards found on the cluster"
        );
        Ok(repeated)
    }
}

impl Ballista {
    /// The tasks in at most [`shard_jobs`] jobs of consecutive files of about equal bytes
    /// ([`super::batches`]: a job per file while there are fewer, several small files to a job
    /// when there are many, since each job costs its planning and scheduling), up to
    /// [`SUBMITTED_AT_ONCE`] submitted at a time: each job a list of its tasks scanned and [`SOURCE_PASS_FN`] evaluated on it
    /// (one stage, one task, its files passed one after the other), so the scheduler hands
    /// each job to a free slot of any executor. (Grouping all tasks into partitions by a hash
    /// of the task let two files share a partition and run one after the other on one
    /// executor.)
    fn shards(&self, tasks: &[ShardTask], work: &Path) -> Result<Vec<String>> {
        let what = format!("passing files as shards on {}", self.url);
        let text = tasks
            .iter()
            .map(serde_json::to_string)
            .collect::<std::result::Result<Vec<String>, _>>()
            .map_err(|e| df_error(&what, e))?;
        let sizes: Vec<u64> = tasks.iter().map(|t| t.bytes).collect();
        let (out, jobs) = self.in_jobs(&text, &sizes, SOURCE_PASS_FN, work, &what, |c| {
            let reply = c.str().map_err(|e| df_error(&what, e))?;
            Ok(reply.iter().flatten().map(str::to_string).collect())
        })?;
        tracing::info!(
            files = tasks.len(),
            jobs,
            "source passed on the cluster, consecutive files in each task"
        );
        Ok(out)
    }

    /// `tasks` (JSON texts) in at most [`shard_jobs`] jobs of consecutive tasks of about equal
    /// `sizes` ([`super::batches`]: a job per task while there are fewer, several to a job when
    /// there are many, since each job costs its planning and scheduling), up to
    /// [`SUBMITTED_AT_ONCE`] submitted at a time: each job its list of tasks (a Parquet file in
    /// `work`) scanned and `function(task)` evaluated on it (one stage, one task, its items one
    /// after the other), so the scheduler hands each job to a free slot of any executor.
    /// (Grouping all tasks into partitions by a hash of the task let two share a partition and
    /// run one after the other on one executor.) Returns each task's reply, as `reply` reads
    /// them from a job's `reply` column, in task order, and the number of jobs.
    fn in_jobs<T: Send>(
        &self,
        tasks: &[String],
        sizes: &[u64],
        function: &str,
        work: &Path,
        what: &str,
        reply: impl Fn(&Column) -> Result<Vec<T>> + Sync,
    ) -> Result<(Vec<T>, usize)> {
        std::fs::create_dir_all(work).map_err(|e| Error::io(work, e))?;
        let runs = super::batches(sizes, shard_jobs());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let replies: std::sync::Mutex<Vec<Option<Result<Vec<T>>>>> =
            std::sync::Mutex::new((0..runs.len()).map(|_| None).collect());
        let job = |j: usize| -> Result<Vec<T>> {
            let run = runs[j].clone();
            let text: Vec<&str> = tasks[run.clone()].iter().map(String::as_str).collect();
            let list = work.join(format!("{function}-{j:06}.parquet"));
            let mut frame = DataFrame::new(text.len(), vec![Column::new("task".into(), text)])
                .map_err(|e| df_error(what, e))?;
            let file = std::fs::File::create(&list).map_err(|e| Error::io(&list, e))?;
            ParquetWriter::new(file)
                .finish(&mut frame)
                .map_err(|e| df_error(what, e))?;
            let sql = |from: &str| format!("SELECT {function}(task) AS reply FROM {}", ident(from));
            let got = self.query(std::slice::from_ref(&list), sql, what);
            let _ = std::fs::remove_file(&list);
            let got = got?;
            let out = reply(got.column("reply").map_err(|e| df_error(what, e))?)?;
            if out.len() != run.len() {
                return Err(Error::Engine(format!(
                    "{what}: the job of tasks {}..{} replied {} rows",
                    run.start,
                    run.end,
                    out.len()
                )));
            }
            Ok(out)
        };
        std::thread::scope(|scope| {
            for _ in 0..runs.len().min(SUBMITTED_AT_ONCE) {
                scope.spawn(|| {
                    loop {
                        let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if j >= runs.len() {
                            break;
                        }
                        let reply = job(j);
                        let failed = reply.is_err();
                        if let Ok(mut r) = replies.lock() {
                            r[j] = Some(reply);
                        }
                        if failed {
                            // No further jobs: the run fails with the first error.
                            next.store(runs.len(), std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                    }
                });
            }
        });
        let replies = replies
            .into_inner()
            .map_err(|_| Error::Internal(format!("{what}: a job panicked")))?;
        let jobs = runs.len();
        let mut out = Vec::with_capacity(tasks.len());
        for r in replies {
            match r {
                Some(r) => out.extend(r?),
                None => continue, // not run: an earlier job failed (its error comes first)
            }
        }
        if out.len() != tasks.len() {
            return Err(Error::Internal(format!(
                "{what}: {} of {} tasks done",
                out.len(),
                tasks.len()
            )));
        }
        Ok((out, jobs))
    }

    /// A source's survey sums on the cluster: each accepted part a task ([`SURVEY_SUMS_FN`],
    /// migstat's own sums inside an executor, on the spec it compiles from the same path), parts
    /// in jobs of consecutive parts; each part's sums come back as bytes and are merged here in
    /// file order, so the result is [`Local`]'s to the bit.
    fn survey_sums(
        &self,
        source: &SourcePlan,
        tables: &[&TableSpec],
        accepted: &Accepted,
    ) -> Result<SurveySums> {
        let (Some(design), Some((spec, spec_hash)), Some(first)) = (
            source.design.as_ref().filter(|_| !tables.is_empty()),
            &accepted.spec,
            accepted.parts.first(),
        ) else {
            return Local::after_pass().survey(source, tables, accepted);
        };
        let what = format!("survey sums of source {} on {}", source.id, self.url);
        let label = survey_definition(spec_hash, source, tables);
        let tasks = accepted
            .parts
            .iter()
            .map(|part| {
                serde_json::to_string(&SurveyTask {
                    spec: spec.display().to_string(),
                    label: label.clone(),
                    source: source.id.clone(),
                    tables: tables.iter().map(|t| t.id.clone()).collect(),
                    part: part.display().to_string(),
                })
            })
            .collect::<std::result::Result<Vec<String>, _>>()
            .map_err(|e| df_error(&what, e))?;
        let sizes = accepted
            .parts
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .map(|m| m.len())
                    .map_err(|e| Error::io(p, e))
            })
            .collect::<Result<Vec<u64>>>()?;
        let work = first.with_file_name(".survey-tasks");
        let parts = self.in_jobs(&tasks, &sizes, SURVEY_SUMS_FN, &work, &what, |c| {
            let bytes = c.binary().map_err(|e| df_error(&what, e))?;
            bytes
                .iter()
                .map(|b| {
                    crate::survey::SourceSums::from_bytes(b.unwrap_or_default())
                        .map_err(|e| Error::Engine(format!("{what}: {e}")))
                })
                .collect()
        });
        let _ = std::fs::remove_dir(&work);
        let (parts, jobs) = parts?;
        let mut sums = crate::survey::ByPart::new(design, tables);
        for part in parts {
            if part.tables.len() != tables.len() {
                return Err(Error::Engine(format!(
                    "{what}: an executor summed {} tables, not {}",
                    part.tables.len(),
                    tables.len()
                )));
            }
            sums.merge(part);
        }
        tracing::info!(
            source = %source.id,
            parts = accepted.parts.len(),
            jobs,
            "survey sums computed on the cluster, part by part"
        );
        Ok(sums.finish())
    }
}

/// The files of a source are passed in at most this many jobs: `MIGSTAT_SHARD_JOBS`, default
/// 64 (see [`SUBMITTED_AT_ONCE`]).
fn shard_jobs() -> usize {
    crate::tuning::count("MIGSTAT_SHARD_JOBS", 64)
}

/// At most this many shard jobs are submitted to the scheduler at a time, each waiting on its
/// own thread here (the scheduler queues what its executors cannot take yet).
const SUBMITTED_AT_ONCE: usize = 64;

/// [`SOURCE_PASS_FN`]`(task)`: the shard of the source pass a task (JSON, a [`ShardTask`])
/// names, run by migstat's own code in this executor ([`ShardPass`]); its reply as text.
pub struct SourcePass {
    pass: Option<ShardPass>,
    signature: Signature,
}

impl std::fmt::Debug for SourcePass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourcePass(…)")
    }
}

// Compared (DataFusion deduplicates functions) by name and signature: one per process.
impl PartialEq for SourcePass {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature && self.pass.is_some() == other.pass.is_some()
    }
}

impl Eq for SourcePass {}

impl std::hash::Hash for SourcePass {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
        self.pass.is_some().hash(state);
    }
}

impl SourcePass {
    /// On an executor: `pass` runs the shards (`None` for planning only).
    pub fn new(pass: Option<ShardPass>) -> Self {
        SourcePass {
            pass,
            signature: Signature::exact(vec![ArrowType::Utf8], Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for SourcePass {
    fn name(&self) -> &str {
        SOURCE_PASS_FN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[ArrowType]) -> datafusion::error::Result<ArrowType> {
        Ok(ArrowType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let Some(pass) = self.pass else {
            return Err(DataFusionError::Execution(format!(
                "{SOURCE_PASS_FN}: this process runs no shards (an executor started by `migstat engine executor` does)"
            )));
        };
        // The batch's files one after the other, the spec compiled once.
        let tasks = task_texts(SOURCE_PASS_FN, &args)?
            .into_iter()
            .map(|task| {
                serde_json::from_str::<ShardTask>(&task).map_err(|e| {
                    DataFusionError::Execution(format!("{SOURCE_PASS_FN}: not a task ({e})"))
                })
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for reply in pass(&tasks) {
            out.append_value(reply);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Record batches (Arrow, from DataFusion) as one polars frame, column by column through the
/// Arrow C Data Interface (no copy of the buffers, no file).
fn to_polars(batches: &[RecordBatch]) -> std::result::Result<DataFrame, String> {
    let mut out: Option<DataFrame> = None;
    for batch in batches {
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
            columns.push(Column::from(import(field.name(), array)?));
        }
        let df = DataFrame::new(batch.num_rows(), columns).map_err(|e| e.to_string())?;
        match &mut out {
            None => out = Some(df),
            Some(all) => {
                all.vstack_mut_owned(df).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(out.unwrap_or_default())
}

/// One Arrow array as a polars series.
#[allow(unsafe_code)] // The C Data Interface is a C ABI: the one unsafe step of the engine.
fn import(name: &str, array: &ArrayRef) -> std::result::Result<Series, String> {
    let (ffi_array, ffi_schema) =
        datafusion::arrow::ffi::to_ffi(&array.to_data()).map_err(|e| e.to_string())?;
    // SAFETY: arrow-rs's FFI_ArrowArray and FFI_ArrowSchema and polars-arrow's ArrowArray and
    // ArrowSchema are the same `#[repr(C)]` structs of the Arrow C Data Interface (checked by
    // size below). The schema is borrowed for the import and released by arrow-rs when
    // `ffi_schema` drops; the array is moved into polars, which calls its release callback.
    unsafe {
        const _: () = assert!(
            std::mem::size_of::<datafusion::arrow::ffi::FFI_ArrowArray>()
                == std::mem::size_of::<polars_arrow::ffi::ArrowArray>()
        );
        const _: () = assert!(
            std::mem::size_of::<datafusion::arrow::ffi::FFI_ArrowSchema>()
                == std::mem::size_of::<polars_arrow::ffi::ArrowSchema>()
        );
        let schema = &*(&ffi_schema as *const datafusion::arrow::ffi::FFI_ArrowSchema
            as *const polars_arrow::ffi::ArrowSchema);
        let field = polars_arrow::ffi::import_field_from_c(schema).map_err(|e| e.to_string())?;
        let array: polars_arrow::ffi::ArrowArray = std::mem::transmute(ffi_array);
        let imported = polars_arrow::ffi::import_array_from_c(array, field.dtype().clone())
            .map_err(|e| e.to_string())?;
        Series::try_from((PlSmallStr::from(name), imported)).map_err(|e| e.to_string())
    }
}

/// A one-way label of a cell-key key (not the key): the coordinator's and an executor's agree
/// only when they hold the same protection key.
pub fn fingerprint(key: &[u8; 32]) -> String {
    let h = blake3::derive_key("migstat 2026 engine key fingerprint", key);
    h[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `migstat_record_key(id, fingerprint)`: each record's key ([`crate::disaggregate::record_key`])
/// as an unsigned 64-bit integer (their sum keeps its low 32 bits exact), on an executor holding
/// the protection key whose [`fingerprint`] the plan names. `Debug` shows no key.
#[derive(PartialEq, Eq, Hash)]
pub struct RecordKey {
    key: Option<[u8; 32]>,
    signature: Signature,
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKey(…)")
    }
}

impl RecordKey {
    /// On an executor: the cell-key key derived from its protection secret.
    pub fn with_key(key: [u8; 32]) -> Self {
        RecordKey {
            key: Some(key),
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    /// On the coordinator and scheduler (planning only) or on an executor without a key.
    pub fn without_key() -> Self {
        RecordKey {
            key: None,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for RecordKey {
    fn name(&self) -> &str {
        RECORD_KEY_FN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[ArrowType]) -> datafusion::error::Result<ArrowType> {
        Ok(ArrowType::UInt64)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let [ids, fp] = args.args.as_slice() else {
            return Err(DataFusionError::Execution(format!(
                "{RECORD_KEY_FN} takes (id, fingerprint)"
            )));
        };
        let key = checked_key(RECORD_KEY_FN, self.key.as_ref(), &text_arg(fp)?)?;
        let ids = ids.to_array(args.number_rows)?;
        let ids = datafusion::arrow::compute::cast(&ids, &ArrowType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let keys: UInt64Array = (0..ids.len())
            .map(|i| {
                let v = if ids.is_null(i) { "" } else { ids.value(i) };
                Some(u64::from(crate::disaggregate::record_key(key, v)))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(keys)))
    }
}

/// The key an executor holds, when it is the one whose [`fingerprint`] the plan asks for.
fn checked_key<'k>(
    function: &str,
    key: Option<&'k [u8; 32]>,
    expected: &str,
) -> datafusion::error::Result<&'k [u8; 32]> {
    let Some(key) = key else {
        return Err(DataFusionError::Execution(format!(
            "{function}: this process holds no protection key: start the executors with MIGSTAT_PROTECTION_KEY or --key-file"
        )));
    };
    if expected != fingerprint(key) {
        return Err(DataFusionError::Execution(format!(
            "{function}: this executor holds another protection key than the coordinator (fingerprint {} here, {} asked): start every executor with the run's key",
            fingerprint(key),
            crate::error::quote(expected)
        )));
    }
    Ok(key)
}

/// A constant text argument of a plan's function call (the first row of an array).
fn text_arg(arg: &ColumnarValue) -> datafusion::error::Result<String> {
    let value = match arg {
        ColumnarValue::Scalar(s) => s.clone(),
        ColumnarValue::Array(a) if !a.is_empty() => {
            datafusion::common::ScalarValue::try_from_array(a, 0)?
        }
        ColumnarValue::Array(_) => return Ok(String::new()),
    };
    Ok(match value {
        datafusion::common::ScalarValue::Utf8(Some(v))
        | datafusion::common::ScalarValue::LargeUtf8(Some(v))
        | datafusion::common::ScalarValue::Utf8View(Some(v)) => v,
        other if other.is_null() => String::new(),
        other => other.to_string(),
    })
}

/// A one-way label of a table's definition as a run compiled it: the spec's content hash (the
/// bytes of the spec, its schemas, code lists, crosswalks and tables), the source's and the
/// table's compiled definitions without their file paths, and the table's periods (a process compiling the spec from
/// another working directory, or through a link, names the same files otherwise). An executor
/// compiles the spec itself and counts a table only when its label is the coordinator's.
pub fn definition(spec_hash: &str, source: &SourcePlan, table: &TableSpec) -> String {
    /// Keys whose values are paths (their files' contents are in the spec's hash).
    const PATHS: [&str; 5] = ["files", "schema_path", "crosswalk", "path", "ptable"];
    fn without_paths(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| !PATHS.contains(&k.as_str()));
                map.values_mut().for_each(without_paths);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(without_paths),
            _ => {}
        }
    }
    let mut h = blake3::Hasher::new();
    h.update(spec_hash.as_bytes());
    for mut v in [serde_json::to_value(source), serde_json::to_value(table)]
        .into_iter()
        .flatten()
    {
        without_paths(&mut v);
        h.update(v.to_string().as_bytes());
    }
    // The periods themselves are left out of a table's serialized definition (a series
    // extended by a year is the same table), but the cells' period indices point into them.
    h.update(
        serde_json::to_string(&table.periods.list)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.finalize().as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `migstat_person_bucket(id, buckets)`: a record's bucket of persons
/// ([`crate::disaggregate::person_bucket`]), so that every record of a person is shuffled to
/// the same group.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PersonBucket {
    signature: Signature,
}

impl PersonBucket {
    pub fn new() -> Self {
        PersonBucket {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for PersonBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for PersonBucket {
    fn name(&self) -> &str {
        BUCKET_FN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[ArrowType]) -> datafusion::error::Result<ArrowType> {
        Ok(ArrowType::UInt64)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let [ids, buckets] = args.args.as_slice() else {
            return Err(DataFusionError::Execution(format!(
                "{BUCKET_FN} takes (id, buckets)"
            )));
        };
        let buckets: u64 = text_arg(buckets)?.parse().map_err(|_| {
            DataFusionError::Execution(format!(
                "{BUCKET_FN}: the number of buckets is not a number"
            ))
        })?;
        let ids = ids.to_array(args.number_rows)?;
        let ids = datafusion::arrow::compute::cast(&ids, &ArrowType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let out: UInt64Array = (0..ids.len())
            .map(|i| {
                let id = (!ids.is_null(i)).then(|| ids.value(i));
                Some(crate::disaggregate::person_bucket(id, buckets))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `migstat_person_cells(spec, definition, source, table, key fingerprint, records)`: for each
/// group (a bucket of persons, all their records as a list of structs), the finest cells of
/// the table ([`crate::disaggregate::person_cells`], on the spec this executor compiles from
/// the same path), as bytes ([`PeriodCells::to_bytes`]). `Debug` shows no key.
#[derive(PartialEq, Eq, Hash)]
pub struct PersonCells {
    key: Option<[u8; 32]>,
    signature: Signature,
}

impl std::fmt::Debug for PersonCells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonCells(…)")
    }
}

impl PersonCells {
    /// On an executor: with the cell-key key derived from its protection secret, if any.
    pub fn new(key: Option<[u8; 32]>) -> Self {
        PersonCells {
            key,
            signature: Signature::any(6, Volatility::Immutable),
        }
    }
}

/// The spec at `path` as this executor compiles it: the one compiled before when `current`
/// accepts it, else compiled again (the coordinator's spec has changed since).
fn compiled(
    path: &str,
    current: impl Fn(&crate::spec::Plan) -> bool,
) -> Result<Arc<crate::spec::Plan>> {
    type Plans = std::sync::Mutex<std::collections::HashMap<String, Arc<crate::spec::Plan>>>;
    static PLANS: std::sync::OnceLock<Plans> = std::sync::OnceLock::new();
    let plans = PLANS.get_or_init(Default::default);
    if let Some(plan) = plans
        .lock()
        .ok()
        .and_then(|p| p.get(path).cloned())
        .filter(|p| current(p))
    {
        return Ok(plan);
    }
    let plan = Arc::new(crate::spec::compile(Path::new(path))?);
    if let Ok(mut p) = plans.lock() {
        p.insert(path.to_string(), plan.clone());
    }
    Ok(plan)
}

impl PersonCells {
    /// One bucket's records as the frame the local pass reads (the accepted file's types).
    fn records(
        records: &datafusion::arrow::array::StructArray,
        schema: &Schema,
    ) -> std::result::Result<DataFrame, String> {
        let mut columns = Vec::with_capacity(records.num_columns());
        for (field, array) in records.fields().iter().zip(records.columns()) {
            let array = match array.data_type() {
                ArrowType::Dictionary(_, _) => {
                    datafusion::arrow::compute::cast(array, &ArrowType::Utf8)
                        .map_err(|e| e.to_string())?
                }
                _ => array.clone(),
            };
            let mut series = import(field.name(), &array)?;
            if let Some(dt) = schema.get(field.name()) {
                series = series.cast(dt).map_err(|e| e.to_string())?;
            }
            columns.push(Column::from(series));
        }
        DataFrame::new(records.len(), columns).map_err(|e| e.to_string())
    }

    fn bucket(
        &self,
        args: &[String],
        records: &datafusion::arrow::array::StructArray,
    ) -> Result<Vec<u8>> {
        let [spec, label, source_id, table_id, key_fp] = args else {
            return Err(Error::Engine(format!(
                "{PERSON_CELLS_FN}: five text arguments"
            )));
        };
        let find = |plan: &crate::spec::Plan| {
            let source = plan.sources.iter().find(|s| &s.id == source_id)?;
            // A group's union is a table of its own (see `spec::groups`).
            let table = plan
                .tables
                .iter()
                .chain(plan.groups.iter().map(|g| &g.union))
                .find(|t| &t.id == table_id)?;
            Some((source.clone(), table.clone()))
        };
        let plan = compiled(spec, |p| {
            find(p).is_some_and(|(s, t)| &definition(&p.spec_hash, &s, &t) == label)
        })?;
        let Some((source, table)) = find(&plan) else {
            return Err(Error::Engine(format!(
                "the spec {} on this executor has no table {} of source {}: give every process the same spec at the same path",
                crate::error::quote(spec),
                crate::error::quote(table_id),
                crate::error::quote(source_id)
            )));
        };
        if &definition(&plan.spec_hash, &source, &table) != label {
            return Err(Error::Engine(format!(
                "table {}: its definition compiled on this executor is not the coordinator's: give every process the same spec, code lists, schemas and delivery files at the same paths",
                crate::error::quote(table_id)
            )));
        }
        let key = match key_fp.as_str() {
            "" => None,
            fp => Some(
                *checked_key(PERSON_CELLS_FN, self.key.as_ref(), fp)
                    .map_err(|e| Error::Engine(e.to_string()))?,
            ),
        };
        let schema = Accepted::of(&plan, &source, Vec::new()).schema;
        let df = Self::records(records, &schema)
            .map_err(|e| df_error(&format!("table {table_id}: reading a bucket of persons"), e))?;
        let cells = crate::disaggregate::person_cells(&source, &table, df, key.as_ref())?;
        Ok(cells.to_bytes())
    }
}

impl ScalarUDFImpl for PersonCells {
    fn name(&self) -> &str {
        PERSON_CELLS_FN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[ArrowType]) -> datafusion::error::Result<ArrowType> {
        Ok(ArrowType::Binary)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let [texts @ .., records] = args.args.as_slice() else {
            return Err(DataFusionError::Execution(format!(
                "{PERSON_CELLS_FN} takes (spec, definition, source, table, key fingerprint, records)"
            )));
        };
        let texts: Vec<String> = texts
            .iter()
            .map(text_arg)
            .collect::<datafusion::error::Result<_>>()?;
        let records = records.to_array(args.number_rows)?;
        let Some(lists) = records.as_list_opt::<i32>() else {
            return Err(DataFusionError::Execution(format!(
                "{PERSON_CELLS_FN}: the records are not a list (array_agg of a struct)"
            )));
        };
        let mut out = datafusion::arrow::array::BinaryBuilder::new();
        for i in 0..lists.len() {
            let bucket = lists.value(i);
            let Some(records) = bucket.as_struct_opt() else {
                return Err(DataFusionError::Execution(format!(
                    "{PERSON_CELLS_FN}: the records are not structs"
                )));
            };
            let bytes = self
                .bucket(&texts, records)
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            out.append_value(bytes);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// What an executor sums for [`SURVEY_SUMS_FN`]: the survey tables `tables` of `source` over
/// the accepted part `part`, on the spec at `spec` when its definitions give `label`
/// ([`survey_definition`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct SurveyTask {
    spec: String,
    label: String,
    source: String,
    tables: Vec<String>,
    part: String,
}

/// The label of a source's survey tables: their [`definition`]s (the source's design in
/// each), so that an executor sums only what the coordinator would.
fn survey_definition(spec_hash: &str, source: &SourcePlan, tables: &[&TableSpec]) -> String {
    let mut h = blake3::Hasher::new();
    for t in tables {
        h.update(definition(spec_hash, source, t).as_bytes());
    }
    h.finalize().to_hex()[..32].to_string()
}

/// [`SURVEY_SUMS_FN`]`(task)`: the survey sums of one accepted part (a [`SurveyTask`], JSON),
/// computed by [`Local`] inside the executor, as [`crate::survey::SourceSums::to_bytes`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SurveySumsFn {
    signature: Signature,
}

impl Default for SurveySumsFn {
    fn default() -> Self {
        SurveySumsFn {
            signature: Signature::exact(vec![ArrowType::Utf8], Volatility::Volatile),
        }
    }
}

impl SurveySumsFn {
    fn part(task: &str) -> Result<Vec<u8>> {
        let task: SurveyTask = serde_json::from_str(task)
            .map_err(|e| Error::Engine(format!("{SURVEY_SUMS_FN}: not a task ({e})")))?;
        fn find<'p>(
            plan: &'p crate::spec::Plan,
            task: &SurveyTask,
        ) -> Option<(&'p SourcePlan, Vec<&'p TableSpec>)> {
            let source = plan.sources.iter().find(|s| s.id == task.source)?;
            let tables = task
                .tables
                .iter()
                .map(|id| plan.tables.iter().find(|t| &t.id == id))
                .collect::<Option<Vec<&TableSpec>>>()?;
            Some((source, tables))
        }
        let plan = compiled(&task.spec, |p| {
            find(p, &task)
                .is_some_and(|(s, t)| survey_definition(&p.spec_hash, s, &t) == task.label)
        })?;
        let Some((source, tables)) = find(&plan, &task) else {
            return Err(Error::Engine(format!(
                "the spec {} on this executor lacks source {} or one of its survey tables: give every process the same spec at the same path",
                crate::error::quote(&task.spec),
                crate::error::quote(&task.source)
            )));
        };
        if survey_definition(&plan.spec_hash, source, &tables) != task.label {
            return Err(Error::Engine(format!(
                "source {}: its survey tables compiled on this executor are not the coordinator's: give every process the same spec, code lists, schemas and delivery files at the same paths",
                crate::error::quote(&task.source)
            )));
        }
        let accepted = Accepted::of(&plan, source, vec![task.part.into()]);
        Local::after_pass()
            .survey(source, &tables, &accepted)?
            .to_bytes()
    }
}

impl ScalarUDFImpl for SurveySumsFn {
    fn name(&self) -> &str {
        SURVEY_SUMS_FN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[ArrowType]) -> datafusion::error::Result<ArrowType> {
        Ok(ArrowType::Binary)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let mut out = datafusion::arrow::array::BinaryBuilder::new();
        for task in task_texts(SURVEY_SUMS_FN, &args)? {
            let bytes = Self::part(&task).map_err(|e| DataFusionError::Execution(e.to_string()))?;
            out.append_value(bytes);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The one argument of `function(task)`, each row's task as text.
fn task_texts(function: &str, args: &ScalarFunctionArgs) -> datafusion::error::Result<Vec<String>> {
    let [tasks] = args.args.as_slice() else {
        return Err(DataFusionError::Execution(format!(
            "{function} takes (task)"
        )));
    };
    let tasks = tasks.to_array(args.number_rows)?;
    let tasks = datafusion::arrow::compute::cast(&tasks, &ArrowType::Utf8)?;
    let Some(tasks) = tasks.as_string_opt::<i32>() else {
        return Err(DataFusionError::Execution(format!(
            "{function}: the task is not text"
        )));
    };
    Ok(tasks
        .iter()
        .map(|t| t.unwrap_or_default().to_string())
        .collect())
}

/// Register the functions plans call, for planning (the coordinator and the scheduler never
/// evaluate them: they hold no key).
fn register_planning(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(RecordKey::without_key()));
    ctx.register_udf(ScalarUDF::new_from_impl(PersonCells::new(None)));
    ctx.register_udf(ScalarUDF::new_from_impl(PersonBucket::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(SourcePass::new(None)));
    ctx.register_udf(ScalarUDF::new_from_impl(SurveySumsFn::default()));
}

/// The function registry of this build's executors: DataFusion's own functions and
/// [`RecordKey`] (with the executor's key, if any), and the shards of source passes (`pass`).
fn registry(
    key: Option<[u8; 32]>,
    pass: Option<ShardPass>,
) -> ballista_core::registry::BallistaFunctionRegistry {
    let mut registry = ballista_core::registry::BallistaFunctionRegistry::default();
    let udf = match key {
        Some(k) => RecordKey::with_key(k),
        None => RecordKey::without_key(),
    };
    registry.scalar_functions.insert(
        RECORD_KEY_FN.to_string(),
        Arc::new(ScalarUDF::new_from_impl(udf)),
    );
    registry.scalar_functions.insert(
        PERSON_CELLS_FN.to_string(),
        Arc::new(ScalarUDF::new_from_impl(PersonCells::new(key))),
    );
    registry.scalar_functions.insert(
        BUCKET_FN.to_string(),
        Arc::new(ScalarUDF::new_from_impl(PersonBucket::new())),
    );
    registry.scalar_functions.insert(
        SOURCE_PASS_FN.to_string(),
        Arc::new(ScalarUDF::new_from_impl(SourcePass::new(pass))),
    );
    registry.scalar_functions.insert(
        SURVEY_SUMS_FN.to_string(),
        Arc::new(ScalarUDF::new_from_impl(SurveySumsFn::default())),
    );
    registry
}

/// `migstat engine scheduler`: a Ballista scheduler on `bind` (`HOST:PORT`), until stopped.
pub fn run_scheduler(bind: &str) -> Result<()> {
    let addr: std::net::SocketAddr = bind
        .parse()
        .map_err(|e| Error::Usage(format!("--bind {}: {e}", crate::error::quote(bind))))?;
    let runtime = server_runtime()?;
    runtime.block_on(async {
        let mut config = ballista_scheduler::config::SchedulerConfig {
            bind_host: addr.ip().to_string(),
            bind_port: addr.port(),
            external_host: addr.ip().to_string(),
            ..Default::default()
        };
        config = config.with_override_session_builder(Arc::new(|config: SessionConfig| {
            let state = datafusion::execution::SessionStateBuilder::new()
                .with_config(config)
                .with_default_features()
                .build();
            let ctx = SessionContext::new_with_state(state);
            register_planning(&ctx);
            Ok(ctx.state())
        }));
        let cluster = ballista_scheduler::cluster::BallistaCluster::new_from_config(&config)
            .await
            .map_err(|e| df_error("starting the scheduler", e))?;
        ballista_scheduler::scheduler_process::start_server(cluster, addr, Arc::new(config))
            .await
            .map_err(|e| df_error("running the scheduler", e))
    })
}

/// `migstat engine executor`: a Ballista executor registered with the scheduler `scheduler`
/// (`HOST:PORT`), serving on `port` (Arrow Flight) and `grpc_port`, until stopped. `key` is the
/// protection secret's cell-key key, for tables protected by the cell key method; `pass` runs
/// the shards of source passes.
#[allow(clippy::too_many_arguments)]
pub fn run_executor(
    scheduler: &str,
    bind_host: &str,
    port: u16,
    grpc_port: u16,
    work_dir: Option<&Path>,
    vcores: usize,
    key: Option<[u8; 32]>,
    pass: Option<ShardPass>,
) -> Result<()> {
    let (host, sport) = scheduler.rsplit_once(':').ok_or_else(|| {
        Error::Usage(format!(
            "--scheduler {}: give HOST:PORT",
            crate::error::quote(scheduler)
        ))
    })?;
    let scheduler_port: u16 = sport.parse().map_err(|_| {
        Error::Usage(format!(
            "--scheduler {}: the port is not a number",
            crate::error::quote(scheduler)
        ))
    })?;
    let runtime = server_runtime()?;
    let config = ballista_executor::executor_process::ExecutorProcessConfig {
        bind_host: bind_host.to_string(),
        external_host: Some(bind_host.to_string()),
        port,
        grpc_port,
        scheduler_host: host.to_string(),
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores,
        work_dir: work_dir.map(|p| p.display().to_string()),
        override_function_registry: Some(Arc::new(registry(key, pass))),
        override_config_producer: Some(Arc::new(session_config)),
        ..Default::default()
    };
    runtime.block_on(async {
        ballista_executor::executor_process::start_executor_process(Arc::new(config))
            .await
            .map_err(|e| df_error("running the executor", e))
    })
}

fn server_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
        .map_err(|e| df_error("starting the runtime", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("O'Neil"), "'O''Neil'");
    }

    #[test]
    fn fingerprints_differ_by_key_and_show_no_key() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&a));
        assert_eq!(fingerprint(&a).len(), 16);
        assert_eq!(format!("{:?}", RecordKey::with_key(a)), "RecordKey(…)");
    }

    #[test]
    fn record_keys_on_an_executor_are_the_local_ones() {
        let key = [7u8; 32];
        let udf = RecordKey::with_key(key);
        let ids: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec![
            Some("P1"),
            None,
            Some("Ω-3"),
        ]));
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(ids),
                ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some(fingerprint(
                    &key,
                )))),
            ],
            arg_fields: vec![
                Arc::new(datafusion::arrow::datatypes::Field::new(
                    "id",
                    ArrowType::Utf8,
                    true,
                )),
                Arc::new(datafusion::arrow::datatypes::Field::new(
                    "fp",
                    ArrowType::Utf8,
                    false,
                )),
            ],
            number_rows: 3,
            return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                "k",
                ArrowType::UInt64,
                false,
            )),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = udf.invoke_with_args(args).unwrap() else {
            panic!("an array")
        };
        let out = out.as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
        let want: Vec<u64> = ["P1", "", "Ω-3"]
            .iter()
            .map(|v| u64::from(crate::disaggregate::record_key(&key, v)))
            .collect();
        assert_eq!(out.values().to_vec(), want);
    }

    #[test]
    fn an_executor_counts_only_the_coordinators_table() {
        let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/observatory.toml");
        let plan = crate::spec::compile(Path::new(spec)).unwrap();
        let table = plan
            .tables
            .iter()
            .find(|t| !crate::disaggregate::is_streamed(t) && !t.kind.is_survey())
            .unwrap();
        let source = plan.sources.iter().find(|s| s.id == table.source).unwrap();
        let label = definition(&plan.spec_hash, source, table);
        assert_eq!(label, definition(&plan.spec_hash, source, table));
        let mut other = table.clone();
        other.dimensions.pop();
        assert_ne!(definition(&plan.spec_hash, source, &other), label);
        assert_ne!(definition("another spec", source, table), label);
        // The same files named from another directory: the same definition.
        let mut moved = source.clone();
        moved.files = moved
            .files
            .iter()
            .map(|f| Path::new("/elsewhere").join(f))
            .collect();
        moved.schema_path = Path::new("/elsewhere").join(&moved.schema_path);
        assert_eq!(definition(&plan.spec_hash, &moved, table), label);
        let mut fewer_periods = table.clone();
        fewer_periods.periods.list.pop();
        assert_ne!(definition(&plan.spec_hash, source, &fewer_periods), label);
        let mut other_person = source.clone();
        other_person.person_id = Some("another_field".into());
        assert_ne!(definition(&plan.spec_hash, &other_person, table), label);

        let udf = PersonCells::new(None);
        let records = datafusion::arrow::array::StructArray::new_empty_fields(0, None);
        let args = |label: &str, table: &str, key: &str| {
            [spec, label, &source.id, table, key].map(String::from)
        };
        let err = |a: [String; 5]| udf.bucket(&a, &records).unwrap_err().to_string();
        let e = err(args("0123", &table.id, ""));
        assert!(e.contains("not the coordinator's"), "{e}");
        let e = err(args(&label, "no_such_table", ""));
        assert!(e.contains("has no table"), "{e}");
        let e = err(args(&label, &table.id, &fingerprint(&[3u8; 32])));
        assert!(e.contains("holds no protection key"), "{e}");
        let keyed = PersonCells::new(Some([4u8; 32]));
        let e = keyed
            .bucket(&args(&label, &table.id, &fingerprint(&[3u8; 32])), &records)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another protection key"), "{e}");
    }

    #[test]
    fn periods_placed_in_a_plan_are_the_local_placement() {
        use crate::calendar::{date_of_days, days_of_date};
        use crate::disaggregate::placed_code::{AFTER, BEFORE, BETWEEN, NO_DATE};
        use crate::spec::period::{Freq, Periods, Placed, RefPeriod};
        let ymd = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let year = |y| RefPeriod {
            start: ymd(y, 1, 1),
            end: ymd(y, 12, 31),
            freq: Freq::Year,
            stock: false,
        };
        // 2022 and 2024: a gap between them.
        let periods = Periods {
            list: vec![year(2022), year(2024)],
            freq: Freq::Year,
            date: Some("d".into()),
            stock: false,
        };
        let mut days: Vec<Option<i32>> = vec![None, Some(i32::MIN), Some(i32::MAX), Some(0)];
        for d in [
            ymd(2021, 12, 31),
            ymd(2022, 1, 1),
            ymd(2022, 12, 31),
            ymd(2023, 6, 1),
            ymd(2024, 1, 1),
            ymd(2024, 12, 31),
            ymd(2025, 1, 1),
        ] {
            days.push(Some(days_of_date(d)));
        }
        let local = |periods: &Periods| -> Vec<i64> {
            days.iter()
                .map(|d| match d.and_then(date_of_days) {
                    None => NO_DATE,
                    Some(x) => match periods.place(x) {
                        Placed::In(i) => i as i32,
                        Placed::Before => BEFORE,
                        Placed::After => AFTER,
                        Placed::Gap => BETWEEN,
                    },
                })
                .map(i64::from)
                .collect()
        };
        let in_plan = |periods: &Periods| -> Vec<i64> {
            let ctx = SessionContext::new();
            let dates: ArrayRef =
                Arc::new(datafusion::arrow::array::Date32Array::from(days.clone()));
            ctx.register_batch("t", RecordBatch::try_from_iter(vec![("d", dates)]).unwrap())
                .unwrap();
            let sql = format!("SELECT {} AS c FROM t", period_case("d", periods));
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let out = rt
                .block_on(async { ctx.sql(&sql).await?.collect().await })
                .unwrap();
            out.iter()
                .flat_map(|b| {
                    let c =
                        datafusion::arrow::compute::cast(b.column(0), &ArrowType::Int64).unwrap();
                    c.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .values()
                        .to_vec()
                })
                .collect()
        };
        let (n, b, a, g) = (NO_DATE as i64, BEFORE as i64, AFTER as i64, BETWEEN as i64);
        assert_eq!(local(&periods), [n, n, n, b, b, 0, 0, g, 1, 1, a]);
        assert_eq!(in_plan(&periods), local(&periods));
        let none = Periods {
            list: Vec::new(),
            ..periods.clone()
        };
        assert_eq!(in_plan(&none), local(&none));
    }

    #[test]
    fn arrow_arrays_cross_into_polars() {
        let strings: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec![
            Some("F"),
            None,
            Some("M"),
        ]));
        let counts: ArrayRef = Arc::new(UInt64Array::from(vec![3u64, 0, 7]));
        let batch = RecordBatch::try_from_iter(vec![("SEX", strings), ("n", counts)]).unwrap();
        let df = to_polars(&[batch.clone(), batch]).unwrap();
        assert_eq!(df.height(), 6);
        let sex: Vec<Option<&str>> = df.column("SEX").unwrap().str().unwrap().iter().collect();
        assert_eq!(
            sex,
            [Some("F"), None, Some("M"), Some("F"), None, Some("M")]
        );
        let n: Vec<u64> = df
            .column("n")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(n, [3, 0, 7, 3, 0, 7]);
    }
}
