//! The distributed engine (cargo feature `distributed`): a table's finest cells computed by an
//! Apache Ballista cluster (DataFusion plans on a scheduler and its executors), and the
//! scheduler and executor processes themselves, embedded in the `migstat` binary so that the
//! cluster runs exactly the DataFusion and Ballista versions this build plans for.
//!
//! Input: the accepted Parquet file of a source (on storage every executor can read at the same
//! path), a table's definition. Output: [`PeriodCells`], the same values as [`Local`] computes.
//!
//! What runs where. The cluster scans the accepted records in parallel, applies the table's
//! filter and, for the cell key method, each record's key, and groups them by the event date
//! and the table's dimensions: one row per (date, cell) with its count and key sum comes back
//! (tens of thousands of rows for millions of records), by the Arrow C Data Interface into
//! polars, where [`crate::disaggregate::add_grouped`] places each date in its period exactly as
//! the local pass does. Tables of persons (their units need every record of a person) and survey
//! sums are computed by [`Local`] on the coordinator for now (see ARCHITECTURE.md).
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
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use polars::prelude::*;

use super::{Accepted, Engine, Local, SurveySums};
use crate::disaggregate::PeriodCells;
use crate::spec::{SourcePlan, TableSpec};
use crate::vocab::raw_column;
use crate::{Error, Result};

/// The name plans call each record's key by.
pub const RECORD_KEY_FN: &str = "migstat_record_key";

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
        let ctx = runtime.block_on(async {
            let state = datafusion::execution::SessionStateBuilder::new()
                .with_config(session_config())
                .with_default_features()
                .build();
            let ctx = SessionContext::remote_with_state(url, state).await?;
            // For planning only: the coordinator never evaluates it (the executors do).
            ctx.register_udf(ScalarUDF::new_from_impl(RecordKey::without_key()));
            Ok::<_, DataFusionError>(ctx)
        });
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

    /// The rows of `sql(name)` over the accepted file registered as `name`, as one polars
    /// frame. Each call registers the file under a name of its own, so that calls from
    /// several threads (groups run side by side) never read each other's file.
    fn query(
        &self,
        accepted: &Path,
        sql: impl Fn(&str) -> String,
        what: &str,
    ) -> Result<DataFrame> {
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "accepted_{}",
            CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let path = accepted
            .to_str()
            .ok_or_else(|| Error::Engine(format!("{}: not a UTF-8 path", accepted.display())))?;
        let sql = sql(&name);
        tracing::debug!(%sql, "planned on the cluster");
        let batches = self.runtime.block_on(async {
            self.ctx
                .register_parquet(name.as_str(), path, ParquetReadOptions::default())
                .await?;
            let out = match self.ctx.sql(&sql).await {
                Ok(df) => df.collect().await,
                Err(e) => Err(e),
            };
            let _ = self.ctx.deregister_table(name.as_str());
            out
        });
        let batches = batches.map_err(|e| df_error(what, e))?;
        to_polars(&batches).map_err(|e| df_error(&format!("{what}: reading the result"), e))
    }
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
/// plain UTF-8 arrays (what polars and the local pass see).
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
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

/// The query of a streamed table's (date, cell) counts over the registered file `from`: its
/// filter, its key sums; and the date column it groups by.
fn grouped_sql(
    source: &SourcePlan,
    table: &TableSpec,
    key: Option<&[u8; 32]>,
    from: &str,
) -> (String, Option<String>) {
    let mut select = Vec::new();
    let mut group = Vec::new();
    let date = table.periods.date.as_ref().map(|d| raw_column(d));
    if let Some(d) = &date {
        select.push(format!("{} AS {}", ident(d), ident(d)));
        group.push(ident(d));
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
            tracing::debug!(table = %table.id, "a table of persons: computed on the coordinator");
            return Local::after_pass().cells(source, table, accepted, key);
        }
        let date = grouped_sql(source, table, key, "accepted").1;
        let grouped = self.query(
            &accepted.path,
            |from| grouped_sql(source, table, key, from).0,
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
        // A survey is small next to a register: its sums stay on the coordinator.
        Local::after_pass().survey(source, tables, accepted)
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
        let Some(key) = &self.key else {
            return Err(DataFusionError::Execution(format!(
                "{RECORD_KEY_FN}: this process holds no protection key: start the executors with MIGSTAT_PROTECTION_KEY or --key-file"
            )));
        };
        let [ids, fp] = args.args.as_slice() else {
            return Err(DataFusionError::Execution(format!(
                "{RECORD_KEY_FN} takes (id, fingerprint)"
            )));
        };
        let expected = match fp {
            ColumnarValue::Scalar(s) => s.to_string(),
            ColumnarValue::Array(a) if !a.is_empty() => {
                datafusion::common::ScalarValue::try_from_array(a, 0)?.to_string()
            }
            ColumnarValue::Array(_) => String::new(),
        };
        if expected != fingerprint(key) {
            return Err(DataFusionError::Execution(format!(
                "{RECORD_KEY_FN}: this executor holds another protection key than the coordinator (fingerprint {} here, {} asked): start every executor with the run's key",
                fingerprint(key),
                crate::error::quote(&expected)
            )));
        }
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

/// The function registry of this build's executors: DataFusion's own functions and
/// [`RecordKey`] (with the executor's key, if any).
fn registry(key: Option<[u8; 32]>) -> ballista_core::registry::BallistaFunctionRegistry {
    let mut registry = ballista_core::registry::BallistaFunctionRegistry::default();
    let udf = match key {
        Some(k) => RecordKey::with_key(k),
        None => RecordKey::without_key(),
    };
    registry.scalar_functions.insert(
        RECORD_KEY_FN.to_string(),
        Arc::new(ScalarUDF::new_from_impl(udf)),
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
            ctx.register_udf(ScalarUDF::new_from_impl(RecordKey::without_key()));
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
/// protection secret's cell-key key, for tables protected by the cell key method.
pub fn run_executor(
    scheduler: &str,
    bind_host: &str,
    port: u16,
    grpc_port: u16,
    work_dir: Option<&Path>,
    vcores: usize,
    key: Option<[u8; 32]>,
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
        override_function_registry: Some(Arc::new(registry(key))),
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
