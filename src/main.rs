//! The `migstat` command line: a thin layer over the library (argument parsing, logging, exit codes).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use polars::prelude::SerWriter;

use migstat::error::{Error, exit};
use migstat::{runner, spec};

mod cli;

/// mimalloc rather than glibc's allocator: chunk after chunk of column buffers freed on one
/// thread and allocated on another fragmented glibc's arenas (peak RSS grew with the rows).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_PIPELINE: &str = "pipelines/observatory.toml";

/// `print!`/`println!` that end the process quietly when stdout is closed early (`| head`)
/// instead of panicking, and with exit 1 and a message on any other write error.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($t)*) {
            stdout_failed(e)
        }
    }};
}
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            stdout_failed(e)
        }
    }};
}

fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {e}");
    std::process::exit(1)
}

/// migstat — disaggregated migration statistics from raw records.
///
/// Exit codes: 0 ok; 1 runtime or I/O error; 65 input data rejected beyond a source's
/// max_invalid_fraction; 70 internal error (a bug); 78 spec or configuration error.
#[derive(Parser)]
#[command(name = "migstat", version, about, long_about)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors in the logs, and no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log format: human-readable text, or one JSON object per line (for cron and log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum QueryFormat {
    Table,
    Csv,
    Json,
    Parquet,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline and publish a release: OUT/releases/<run-id>/, with OUT/current pointing to it.
    ///
    /// A release holds manifest.json, public/ (protected tables), restricted/ (accepted records,
    /// true tables, disclosure audits) and quarantine/. If a source's quarantined fraction exceeds
    /// its max_invalid_fraction or a table fails its disclosure checks, the run is rejected (exit
    /// 65): current stays on the previous release and the run's files are kept in
    /// OUT/failed/<run-id>/. When nothing changed since the current release, nothing is
    /// recomputed ("up to date", exit 0); sources whose inputs did not change are reused. A second
    /// run on the same OUT exits 75 at once unless --wait. Every run is appended to
    /// OUT/history.jsonl.
    Run {
        /// The pipeline spec.
        #[arg(default_value = DEFAULT_PIPELINE)]
        pipeline: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// What to print on stdout when the run ends: a text summary, or the manifest as JSON
        /// (default: text, or one JSON line under `--log-format json`, so that a cron line
        /// appending stdout and stderr to one `.jsonl` file keeps every line JSON).
        #[arg(long, value_enum)]
        report: Option<ReportFormat>,
        /// If another run holds OUT, wait for it instead of exiting 75.
        #[arg(long)]
        wait: bool,
        /// Recompute every source and table, even those whose inputs did not change (periods
        /// already published are still published again as they were, unless revised).
        #[arg(long)]
        full_refresh: bool,
        /// Revise these published tables' periods already published (comma-separated table
        /// ids, or `all`): a new vintage, audited with the earlier ones.
        #[arg(long, value_delimiter = ',')]
        revise: Vec<String>,
        /// Revise only these periods (comma-separated SDMX TIME_PERIODs: 2022, 2024-Q1,
        /// 2024-01, 2024-12-31): a backfill of earlier periods. With `--revise`, of those
        /// tables; alone, of every table that has them. The others stay as published.
        #[arg(long = "period", value_delimiter = ',')]
        periods: Vec<String>,
        /// Where the tables' aggregates are computed: `local` (this process, counting while the
        /// sources are read), `local-after-pass` (this process, from the accepted files after
        /// the pass: what a cluster computes) or, built with `--features distributed`,
        /// `ballista://HOST:PORT` (a Ballista scheduler). The release is the same whichever.
        #[arg(long, default_value = "local")]
        engine: String,
        /// Pass each delivery file of a source of several files as a shard of its own: a
        /// `migstat shard` process per file, N at a time; duplicate keys across files are
        /// resolved when the shards are put together, so the release is the same as one pass.
        /// 0 (the default): one pass over the files.
        #[arg(long, default_value_t = 0)]
        shards: usize,
    },
    /// Check a release against its manifest: every file present with its size and blake3, and
    /// nothing unlisted. Exit 65 when anything differs.
    Verify {
        /// A release directory, or an output directory (its current release).
        #[arg(default_value = "out")]
        release: PathBuf,
    },
    /// Show the latest runs from OUT/history.jsonl: status, exit code, rows, time.
    History {
        /// Output directory.
        #[arg(default_value = "out")]
        out: PathBuf,
        /// How many runs.
        #[arg(long, short = 'n', default_value_t = 20)]
        last: usize,
        /// Text for people, or JSON lines for tools.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Check a pipeline spec and its schemas without reading any data; report every problem at once.
    Check {
        #[arg(default_value = DEFAULT_PIPELINE)]
        pipeline: PathBuf,
    },
    /// Print the compiled plan: sources, files, schemas and the checks applied to each field.
    Explain {
        #[arg(default_value = DEFAULT_PIPELINE)]
        pipeline: PathBuf,
        /// Text for people, or JSON for tools.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Audit a published release: nothing below a suppressed table's threshold, and every
    /// primary-suppressed cell's feasible interval given the published cells at least the
    /// protection range wide; no count of 1 or 2 in a cell-key table. Exit 65 when any check fails.
    ///
    /// By default the public pattern is checked with the restricted tier's true values (hypercube
    /// certificates found afresh, else linear programs); --exact uses the public files alone and
    /// computes every interval exactly by linear programming (slower).
    Audit {
        /// The release directory (a run's output directory).
        #[arg(default_value = "out")]
        release: PathBuf,
        /// Exact intervals from the public files alone, as an outsider could compute them.
        #[arg(long)]
        exact: bool,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Text for people, or JSON for tools.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// SQL over a release's public tables (polars SQL): each table is named by its id, with its
    /// columns and the period partition (`ref_year`, `ref_month`, `ref_date`, ...). Prints an aligned table, CSV or JSON lines, or writes
    /// Parquet (--format parquet --out FILE). Restricted files are not visible.
    ///
    /// Example: migstat query "SELECT SEX, value FROM asylum WHERE STATUS = '_T' AND
    /// AGE_GROUP = '_T' AND CITIZENSHIP_REGION = '_T' AND CITIZENSHIP = '_T'"
    Query {
        /// The SQL query.
        sql: String,
        /// A release directory, or an output directory (its current release).
        #[arg(long, default_value = "out")]
        release: PathBuf,
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// Write to this file instead of stdout (required for Parquet).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// What a release publishes: its tables, or with TABLE that table's columns, codes and labels.
    Describe {
        /// A public table's id.
        table: Option<String>,
        /// A release directory, or an output directory (its current release).
        #[arg(long, default_value = "out")]
        release: PathBuf,
    },
    /// Where a published number comes from: a cell's sources, harmonization rules and
    /// protection; with --restricted its deliveries (path, blake3), true value, the protection
    /// rule that fired and the records that make it.
    Trace {
        /// A release directory, or an output directory (its current release).
        release: PathBuf,
        /// A table's id.
        table: String,
        /// The cell: DIM=CODE for each dimension not at its total (`_T`).
        cell: Vec<String>,
        /// The period (`2024`, `2024-Q1`, `2024-12-31`; default: the table's last).
        #[arg(long)]
        period: Option<String>,
        /// The spec the release was computed from.
        #[arg(long, default_value = DEFAULT_PIPELINE)]
        pipeline: PathBuf,
        /// Add what only the restricted tier may say (needs read access to it).
        #[arg(long)]
        restricted: bool,
        /// Records listed (all are counted).
        #[arg(long, default_value_t = migstat::trace::DEFAULT_RECORDS)]
        max_records: usize,
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Count the records of a Parquet file by the given columns, with every margin (`_T`): a
    /// `GROUP BY CUBE` for a harmonized or accepted file. Prints CSV, or writes Parquet with --out.
    ///
    /// Unprotected: run it on restricted files for analysis, not for publication.
    Tabulate {
        /// The Parquet file.
        file: PathBuf,
        /// Dimension columns, comma-separated (e.g. SEX,AGE_GROUP).
        #[arg(long, value_delimiter = ',', required = true)]
        by: Vec<String>,
        /// Write the table to this Parquet file instead of printing CSV.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Generate deterministic synthetic deliveries (survey and registers), messy like real ones.
    ///
    /// Scale 1 is the committed sample (a few MB); border crossings grow by 20,000 rows per unit of
    /// scale (scale 500 gives 10 million). The same scale and seed always give the same bytes.
    #[cfg(feature = "sample")]
    Sample {
        /// Directory to write into (created if needed).
        #[arg(long)]
        out: PathBuf,
        /// Size multiplier.
        #[arg(long, default_value_t = 1)]
        scale: u32,
        /// Random seed.
        #[arg(long, default_value_t = 2018)]
        seed: u64,
        /// Only these sources, comma-separated (survey, permits, asylum, border, returns,
        /// trafficking); a source's files are the same whichever others are made.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Validate and harmonize delivery files of a source each on its own, one after the other
    /// (shards of the source pass: what `migstat run --shards N` starts per run of consecutive
    /// files, on this machine or any with the same paths). Writes each file's accepted rows,
    /// quarantine, key runs and `outcome.json` into its DIR.
    #[command(hide = true)]
    Shard {
        /// The pipeline spec.
        pipeline: PathBuf,
        /// The source's id.
        #[arg(long)]
        source: String,
        /// The file's index among the source's files (from 0, in the spec's order). Repeated
        /// (with a --dir, --bytes and --blake3 each, in the same order): several files passed
        /// one after the other.
        #[arg(long, required = true)]
        file: Vec<usize>,
        /// Where the shard's files go (emptied first).
        #[arg(long, required = true)]
        dir: Vec<PathBuf>,
        /// The file's size and blake3 as hashed when the run began: a file that changed
        /// since is an error.
        #[arg(long, required = true)]
        bytes: Vec<u64>,
        #[arg(long, required = true)]
        blake3: Vec<String>,
        /// The spec's content hash the run compiled: a spec edited since is an error.
        #[arg(long)]
        spec_hash: String,
    },
    /// Run a process of a Ballista cluster for `migstat run --engine ballista://HOST:PORT`
    /// (built with `--features distributed`): a scheduler, or an executor registered with one.
    #[cfg(feature = "distributed")]
    Engine {
        #[command(subcommand)]
        role: EngineRole,
    },
}

#[cfg(feature = "distributed")]
#[derive(Subcommand)]
enum EngineRole {
    /// A Ballista scheduler: plans the tables' queries and hands their tasks to the executors.
    Scheduler {
        /// Address to listen on (gRPC), HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: String,
    },
    /// A Ballista executor: runs tasks over the accepted Parquet files (which it must be able
    /// to read at the same paths as the coordinator). Tables protected by the cell key method
    /// need the run's protection key: from MIGSTAT_PROTECTION_KEY, or --key-file.
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// Host to listen on and advertise.
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        /// Arrow Flight port (results and shuffles).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port (tasks from the scheduler).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Directory for shuffle files (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Tasks run at once (default: the machine's cores).
        #[arg(long, default_value_t = 0)]
        concurrent_tasks: usize,
        /// The protection key file (read only, never created), when MIGSTAT_PROTECTION_KEY
        /// is not set.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIGSTAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("migstat={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The final error on stderr: text, or under `--log-format json` one JSON line like the logs'
/// (a log collector parses every line), with the exit code.
fn report_error(json: bool, message: &str, code: i32) {
    if json {
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "ERROR",
            "fields": { "message": message, "exit_code": code },
            "target": "migstat",
        });
        eprintln!("{line}");
    } else {
        eprintln!("error: {message}");
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout as usual; a wrong argument under
            // --log-format json is one JSON line too.
            let args: Vec<String> = std::env::args().collect();
            let json = args
                .windows(2)
                .any(|w| w[0] == "--log-format" && w[1] == "json")
                || args.iter().any(|a| a == "--log-format=json");
            if !e.use_stderr() {
                e.exit()
            }
            // A wrong argument exits 64 (EX_USAGE) as every other usage error does.
            let code = migstat::error::exit::USAGE;
            if json {
                report_error(true, e.to_string().trim_end(), code);
            } else {
                let _ = e.print();
            }
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
    };
    init_logging(&cli);
    // A panic is one log line (JSON under --log-format json), with the default report (and its
    // backtrace) only when RUST_BACKTRACE asks for it. Readers' panics on damaged inputs are
    // caught and reported as errors naming the file (`error::guard_reader`).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            default_hook(info)
        } else if migstat::error::guarded() {
            tracing::debug!(
                "a reader panicked (reported as an error): {}",
                migstat::error::cap_bytes(&info.to_string(), migstat::error::REASON_MAX)
            )
        } else {
            tracing::error!(
                "panic: {}",
                migstat::error::cap_bytes(&info.to_string(), migstat::error::REASON_MAX)
            )
        }
    }));
    let json = matches!(cli.log_format, LogFormat::Json);
    let code = match execute(&cli) {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            report_error(json, &e.to_string(), code);
            code
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn execute(cli: &Cli) -> Result<i32, Error> {
    match &cli.command {
        Command::Check { pipeline } => {
            let plan = spec::compile(pipeline)?;
            let files: usize = plan.sources.iter().map(|s| s.files.len()).sum();
            outln!(
                "{}: ok — pipeline `{}`, {} source(s), {} file(s)",
                pipeline.display(),
                plan.pipeline_id,
                plan.sources.len(),
                files
            );
            Ok(exit::OK)
        }
        Command::Explain { pipeline, format } => {
            let plan = spec::compile(pipeline)?;
            match format {
                ReportFormat::Text => out!("{}", crate::cli::explain::explain(&plan)),
                ReportFormat::Json => outln!("{}", to_json(&plan)?),
            }
            Ok(exit::OK)
        }
        Command::Run {
            pipeline,
            out,
            report,
            wait,
            full_refresh,
            revise,
            periods,
            engine,
            shards,
        } => {
            // SIGTERM and SIGINT stop the run cleanly (see `interrupt`).
            migstat::interrupt::install()?;
            let plan = match spec::compile(pipeline) {
                Ok(p) => p,
                Err(e) if out.is_dir() => {
                    // The nightly history shows a broken spec too (in an output directory that
                    // exists already: a spec error never creates one).
                    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    let _ = migstat::release::append_history(
                        out,
                        &migstat::release::HistoryRecord {
                            run_id: format!("{}-spec", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
                            pipeline_id: String::new(),
                            started_at: now.clone(),
                            finished_at: now,
                            status: migstat::manifest::RunStatus::Failed,
                            exit_code: e.exit_code(),
                            error: Some(migstat::error::cap_bytes(
                                &e.to_string(),
                                migstat::manifest::HISTORY_ERROR_MAX,
                            )),
                            sources: Vec::new(),
                            tables_published: Vec::new(),
                            seconds: Default::default(),
                        },
                    );
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let opts = runner::RunOptions {
                out_dir: out.clone(),
                progress: (!cli.quiet && std::io::stderr().is_terminal()).then(|| {
                    std::sync::Arc::new(crate::cli::Bars) as std::sync::Arc<dyn runner::Progress>
                }),
                wait: *wait,
                full_refresh: *full_refresh,
                revise: revise.clone(),
                periods: periods.clone(),
                engine: Some(migstat::engine::from_name(engine)?),
                shards: match shards {
                    0 | 1 => runner::shard::Shards::Off,
                    n => runner::shard::Shards::Processes {
                        exe: std::env::current_exe().map_err(|e| {
                            Error::Usage(format!(
                                "--shards: cannot find migstat's own binary ({e})"
                            ))
                        })?,
                        at_once: *n,
                    },
                },
            };
            let manifest = runner::run(&plan, &opts)?;
            let json_lines = matches!(cli.log_format, LogFormat::Json);
            let report = report.unwrap_or(if json_lines {
                ReportFormat::Json
            } else {
                ReportFormat::Text
            });
            let to_json = |m: &migstat::manifest::Manifest| match json_lines {
                true => serde_json::to_string(m)
                    .map_err(|e| Error::Internal(format!("serialising JSON: {e}"))),
                false => to_json(m),
            };
            if manifest.status == migstat::manifest::RunStatus::UpToDate {
                match report {
                    ReportFormat::Text => outln!(
                        "up to date: release {} is current; inputs, spec, code lists and migstat version are unchanged (--full-refresh recomputes)",
                        manifest.run_id
                    ),
                    ReportFormat::Json => outln!("{}", to_json(&manifest)?),
                }
                return Ok(exit::OK);
            }
            match report {
                ReportFormat::Text => out!("{}", crate::cli::summary(&manifest)),
                ReportFormat::Json => outln!("{}", to_json(&manifest)?),
            }
            if manifest.rejections.is_empty() {
                Ok(exit::OK)
            } else {
                Err(Error::Rejected(manifest.rejections))
            }
        }
        Command::Verify { release } => {
            // An output directory stands for its current release.
            let dir = migstat::query::release_dir(release);
            let problems = migstat::release::verify(&dir)?;
            if problems.is_empty() {
                outln!("{}: intact", dir.display());
                Ok(exit::OK)
            } else {
                for p in &problems {
                    outln!("{}: {p}", dir.display());
                }
                Ok(exit::DATA_REJECTED)
            }
        }
        Command::History { out, last, format } => {
            let records = migstat::release::read_history(out)?;
            match format {
                ReportFormat::Text => {
                    out!("{}", migstat::release::history_table(&records, *last))
                }
                ReportFormat::Json => {
                    for r in records.iter().rev().take(*last).rev() {
                        outln!(
                            "{}",
                            serde_json::to_string(r).map_err(|e| Error::Internal(e.to_string()))?
                        );
                    }
                }
            }
            Ok(exit::OK)
        }
        Command::Audit {
            release,
            exact,
            table,
            format,
        } => {
            let depth = if *exact {
                migstat::protect::Depth::Exact
            } else {
                migstat::protect::Depth::Certified
            };
            let dir = migstat::query::release_dir(release);
            let checks = migstat::protect::audit_release(&dir, depth, table.as_deref())?;
            match format {
                ReportFormat::Json => outln!("{}", to_json(&checks)?),
                ReportFormat::Text => {
                    outln!(
                        "{:<24} {:<14} {:>7} {:>10} {:>7} {:>10}  result",
                        "table",
                        "method",
                        "cells",
                        "suppressed",
                        "audited",
                        "narrowest"
                    );
                    for c in &checks {
                        outln!(
                            "{:<24} {:<14} {:>7} {:>10} {:>7} {:>10}  {}",
                            c.table,
                            c.method,
                            c.cells,
                            c.suppressed,
                            c.audited,
                            c.narrowest_interval
                                .map_or("-".to_string(), |w| format!("{w:.2}")),
                            if c.failures.is_empty() {
                                "passed".to_string()
                            } else {
                                format!("FAILED ({} cells)", c.failures.len())
                            }
                        );
                        for f in c.failures.iter().take(20) {
                            outln!("    {}: {f}", c.file.display());
                        }
                    }
                }
            }
            if checks.iter().all(|c| c.failures.is_empty()) {
                Ok(exit::OK)
            } else {
                Ok(exit::DATA_REJECTED)
            }
        }
        Command::Query {
            sql,
            release,
            format,
            out,
        } => {
            let dir = migstat::query::release_dir(release);
            let mut df = migstat::query::query(&dir, sql)?;
            let bytes: Vec<u8> = match format {
                QueryFormat::Table => migstat::query::aligned(&df).into_bytes(),
                QueryFormat::Json => migstat::query::json_lines(&df).into_bytes(),
                QueryFormat::Csv => {
                    let mut buf = Vec::new();
                    polars::prelude::CsvWriter::new(&mut buf)
                        .finish(&mut df)
                        .map_err(|e| Error::Internal(format!("writing CSV: {e}")))?;
                    buf
                }
                QueryFormat::Parquet => {
                    let Some(path) = out else {
                        return Err(Error::Usage(
                            "--format parquet needs --out FILE".to_string(),
                        ));
                    };
                    let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
                    polars::prelude::ParquetWriter::new(f)
                        .with_compression(polars::prelude::ParquetCompression::Zstd(None))
                        .finish(&mut df)
                        .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
                    return Ok(exit::OK);
                }
            };
            match out {
                Some(path) => std::fs::write(path, &bytes).map_err(|e| Error::io(path, e))?,
                None => {
                    use std::io::Write;
                    if let Err(e) = std::io::stdout().write_all(&bytes) {
                        stdout_failed(e)
                    }
                }
            }
            Ok(exit::OK)
        }
        Command::Trace {
            release,
            table,
            cell,
            period,
            pipeline,
            restricted,
            max_records,
            format,
        } => {
            let codes: Vec<(String, String)> = cell
                .iter()
                .map(|c| {
                    c.split_once('=')
                        .map(|(d, v)| (d.to_string(), v.to_string()))
                        .ok_or_else(|| {
                            Error::Usage(format!(
                                "`{}`: write each code as DIM=CODE (e.g. SEX=F)",
                                migstat::error::cap_bytes(c, 200)
                            ))
                        })
                })
                .collect::<Result<_, _>>()?;
            let plan = spec::compile(pipeline)?;
            let dir = migstat::query::release_dir(release);
            let t = migstat::trace::trace(
                &plan,
                &dir,
                table,
                &codes,
                period.as_deref(),
                *restricted,
                *max_records,
            )?;
            match format {
                ReportFormat::Text => out!("{}", migstat::trace::text(&t)),
                ReportFormat::Json => outln!("{}", to_json(&t)?),
            }
            Ok(exit::OK)
        }
        Command::Describe { table, release } => {
            let dir = migstat::query::release_dir(release);
            out!("{}", migstat::query::describe(&dir, table.as_deref())?);
            Ok(exit::OK)
        }
        Command::Tabulate { file, by, out } => {
            let mut table = migstat::export::signed(migstat::disaggregate::tabulate(file, by)?)?;
            let written = match out {
                Some(path) => {
                    let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
                    polars::prelude::ParquetWriter::new(f)
                        .with_compression(polars::prelude::ParquetCompression::Zstd(None))
                        .finish(&mut table)
                        .map(|_| ())
                }
                None => {
                    // A cube is small (its cells, not its records): format it, then write it.
                    let mut buf = Vec::new();
                    let done = polars::prelude::CsvWriter::new(&mut buf).finish(&mut table);
                    if done.is_ok() {
                        use std::io::Write as _;
                        if let Err(e) = std::io::stdout().write_all(&buf) {
                            stdout_failed(e)
                        }
                    }
                    done
                }
            };
            written.map_err(|e| Error::Internal(format!("writing the table: {e}")))?;
            Ok(exit::OK)
        }
        #[cfg(feature = "sample")]
        Command::Sample {
            out,
            scale,
            seed,
            only,
        } => {
            if *scale == 0 {
                return Err(Error::Usage("--scale must be at least 1".into()));
            }
            let written = migstat::sample::generate_only(out, *scale, *seed, only)?;
            for (path, rows) in written {
                outln!("{:>12} rows  {}", rows, path.display());
            }
            Ok(exit::OK)
        }
        Command::Shard {
            pipeline,
            source,
            file,
            dir,
            bytes,
            blake3,
            spec_hash,
        } => {
            migstat::interrupt::install()?;
            let absolute = |p: &std::path::Path| {
                std::path::absolute(p).map_err(|e| migstat::error::Error::io(p, e))
            };
            if dir.len() != file.len() || bytes.len() != file.len() || blake3.len() != file.len() {
                return Err(Error::Usage(
                    "give --dir, --bytes and --blake3 once for each --file, in the same order"
                        .into(),
                ));
            }
            let mut tasks = Vec::with_capacity(file.len());
            for (((file, dir), bytes), blake3) in file.iter().zip(dir).zip(bytes).zip(blake3) {
                tasks.push(migstat::engine::ShardTask {
                    // As given, so that files are named as the run names them.
                    spec: pipeline.clone(),
                    spec_hash: spec_hash.clone(),
                    source: source.clone(),
                    // Named from the spec's path as given (the run's own, in its directory).
                    names: Vec::new(),
                    file: *file,
                    dir: absolute(dir)?,
                    bytes: *bytes,
                    blake3: blake3.clone(),
                    key_table: None,
                });
            }
            runner::shard::pass_tasks(&tasks)?;
            Ok(exit::OK)
        }
        #[cfg(feature = "distributed")]
        Command::Engine { role } => {
            use migstat::engine::ballista;
            match role {
                EngineRole::Scheduler { bind } => ballista::run_scheduler(bind)?,
                EngineRole::Executor {
                    scheduler,
                    bind_host,
                    port,
                    grpc_port,
                    work_dir,
                    concurrent_tasks,
                    key_file,
                } => {
                    let source = migstat::protect::KeySource {
                        file: key_file.clone(),
                        ..Default::default()
                    };
                    if let Some(f) = key_file.as_ref().filter(|f| !f.exists()) {
                        return Err(Error::Usage(format!(
                            "--key-file {}: no such file (an executor never creates a key)",
                            f.display()
                        )));
                    }
                    let key =
                        migstat::protect::Secret::resolve(&source)?.map(|s| s.derive("cell key"));
                    ballista::run_executor(
                        scheduler,
                        bind_host,
                        *port,
                        *grpc_port,
                        work_dir.as_deref(),
                        *concurrent_tasks,
                        key,
                        Some(runner::shard::run_tasks),
                    )?
                }
            }
            Ok(exit::OK)
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Internal(format!("serialising JSON: {e}")))
}
