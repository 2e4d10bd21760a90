//! The distributed engine (issue 20, feature `distributed`): a Ballista scheduler and two
//! executors started as separate processes on localhost (`migstat engine scheduler|executor`),
//! and the default pipeline and a generated 10 M-row delivery run through them: every file of
//! the release must be byte-identical to the local run's. Also: an executor holding another
//! protection key fails the run instead of adding other noise; an unreachable scheduler is an
//! engine error before anything is published.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{migstat, repo};

/// The protection key of every run and executor here (not the repository's key file).
const KEY: &str = "distributed-test-key-0123456789";

/// The spec `text` with its border crossings protected by the cell key method instead of
/// rounding (the sample's cell-key table is a table of persons): the records' keys are then
/// computed on the executors, each with its own protection key.
fn keyed(text: &str) -> String {
    let at = text
        .find("[tables.border_crossings]")
        .expect("a border crossings table");
    let (head, tail) = text.split_at(at);
    let rounded = "protect = { method = \"round\", base = 5 }";
    assert!(tail.contains(rounded));
    format!(
        "{head}{}",
        tail.replacen(rounded, "protect = { method = \"cell_key\" }", 1)
    )
}

/// A port free now on localhost, handed out once in this process and below Linux's ephemeral
/// range (32768–60999): a port the system picked (`bind` to port 0) could be given again as the
/// source port of any outgoing connection before the process meant to listen on it binds it
/// (an executor then exited at start when the distributed tests ran side by side).
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    // Processes of this test binary started at once start at different places.
    let base = 20_000 + (std::process::id() % 4_000) as u16 * 3;
    loop {
        let port = base + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(port < 32_768, "no free port below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited: {status}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{what} does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The cluster's processes, killed when dropped.
struct Cluster {
    scheduler: String,
    children: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(args: &[&str], envs: &[(&str, &str)], log: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migstat"));
    cmd.args(args)
        .current_dir(repo())
        .env_remove("MIGSTAT_PROTECTION_KEY")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("migstat starts")
}

/// A scheduler and `executors` executors, each executor holding `keys[i]`.
fn start(dir: &Path, keys: &[&str]) -> Cluster {
    let port = free_port();
    let scheduler = format!("127.0.0.1:{port}");
    let mut cluster = Cluster {
        scheduler: scheduler.clone(),
        children: Vec::new(),
    };
    let mut child = spawn(
        &["engine", "scheduler", "--bind", &scheduler],
        &[],
        &dir.join("scheduler"),
    );
    wait_for_port(port, "the scheduler", &mut child);
    cluster.children.push(child);
    for (i, key) in keys.iter().enumerate() {
        let (flight, grpc) = (free_port(), free_port());
        let work = dir.join(format!("executor-{i}"));
        std::fs::create_dir_all(&work).unwrap();
        let mut child = spawn(
            &[
                "engine",
                "executor",
                "--scheduler",
                &scheduler,
                "--port",
                &flight.to_string(),
                "--grpc-port",
                &grpc.to_string(),
                "--work-dir",
                work.to_str().unwrap(),
                "--concurrent-tasks",
                "2",
            ],
            &[("MIGSTAT_PROTECTION_KEY", key)],
            &work,
        );
        wait_for_port(flight, "an executor", &mut child);
        wait_for_port(grpc, "an executor", &mut child);
        cluster.children.push(child);
    }
    // The executors register with the scheduler as they start.
    std::thread::sleep(Duration::from_secs(2));
    cluster
}

fn run(spec: &Path, out: &Path, engine: &str) -> std::process::Output {
    run_with(spec, out, engine, &[])
}

fn run_with(spec: &Path, out: &Path, engine: &str, envs: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec![("MIGSTAT_PROTECTION_KEY", KEY)];
    all.extend_from_slice(envs);
    migstat(
        &[
            "-q",
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--engine",
            engine,
        ],
        &all,
    )
}

/// (path, blake3) of every file the release lists, and its row accounting.
fn release_files(out: &Path) -> Vec<(String, String)> {
    crate::manifest(out)
        .outputs
        .iter()
        .map(|f| (f.path.clone(), f.blake3.clone()))
        .collect()
}

/// The default pipeline's spec with its data in `dir` (the repository's sample).
fn default_spec(dir: &Path) -> PathBuf {
    let spec = std::fs::read_to_string(repo().join("pipelines/observatory.toml"))
        .unwrap()
        .replace("\"../", &format!("\"{}/", repo().display()));
    let spec = keyed(&spec);
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, spec).unwrap();
    path
}

/// Run `spec` locally and on the cluster (with `envs`, and the run log at info level) and
/// check that both publish the same files and row accounting; the cluster run's log.
fn assert_same_release(
    spec: &Path,
    dir: &Path,
    cluster: &Cluster,
    tables: &[&str],
    envs: &[(&str, &str)],
    remote_args: &[&str],
) -> String {
    let (local, remote) = (dir.join("out-local"), dir.join("out-ballista"));
    let o = run_with(spec, &local, "local", envs);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut logged = envs.to_vec();
    logged.push(("MIGSTAT_LOG", "migstat=info"));
    let engine = format!("ballista://{}", cluster.scheduler);
    let mut args = vec![
        "-q",
        "run",
        spec.to_str().unwrap(),
        "--out",
        remote.to_str().unwrap(),
        "--engine",
        &engine,
    ];
    args.extend_from_slice(remote_args);
    let mut all = vec![("MIGSTAT_PROTECTION_KEY", KEY)];
    all.extend_from_slice(&logged);
    let o = migstat(&args, &all);
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(0), "{log}");
    let (mut a, mut b) = (release_files(&local), release_files(&remote));
    if !remote_args.is_empty() {
        // A sharded pass quarantines the same rows, in another order (the duplicates found
        // across files come last): compared as rows, every other file byte for byte.
        for m in &crate::manifest(&local).sources {
            let q = format!("current/quarantine/{}.parquet", m.id);
            assert_eq!(
                crate::releases::quarantine_rows(&local.join(&q)),
                crate::releases::quarantine_rows(&remote.join(&q)),
                "{q}"
            );
        }
        a.retain(|(p, _)| !p.starts_with("quarantine/"));
        b.retain(|(p, _)| !p.starts_with("quarantine/"));
    }
    for t in tables {
        assert!(
            a.iter()
                .any(|(p, _)| p.starts_with(&format!("public/tables/{t}"))),
            "no {t} published"
        );
    }
    assert_eq!(a, b);
    let (ma, mb) = (crate::manifest(&local), crate::manifest(&remote));
    for (x, y) in ma.sources.iter().zip(&mb.sources) {
        assert_eq!(
            (x.rows_read, x.rows_accepted, x.rows_quarantined),
            (y.rows_read, y.rows_accepted, y.rows_quarantined)
        );
    }
    // Every table's records left out of its periods, by reason (placed by the plan on the
    // cluster, by the pass locally).
    assert_eq!(ma.periods.len(), mb.periods.len());
    for (t, p) in &ma.periods {
        assert_eq!(
            Some(&p.outside),
            mb.periods.get(t).map(|q| &q.outside),
            "{t}"
        );
    }
    log
}

/// Whether the cluster run's `log` says `table`'s persons were counted on the cluster (itself,
/// or the union of the protection group it leads).
fn persons_on_cluster(log: &str, table: &str) -> bool {
    log.lines().any(|l| {
        l.contains("persons counted on the cluster")
            && (l.contains(&format!("table={table} "))
                || l.contains(&format!("table=group:{table} ")))
    })
}

#[test]
fn a_ballista_cluster_publishes_the_local_release() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = start(tmp.path(), &[KEY, KEY]);

    // The default pipeline: tables of events (border crossings, with the cell key method in
    // the sample's spec where it applies), persons, surveys, protected groups.
    let sample = tmp.path().join("sample");
    std::fs::create_dir_all(&sample).unwrap();
    let spec = default_spec(&sample);
    let log = assert_same_release(
        &spec,
        &sample,
        &cluster,
        &[
            "border_crossings",
            "asylum",
            "permit_stock",
            "survey_population",
        ],
        &[],
        &[],
    );
    // Stocks and flows of persons: their units made on the executors.
    for t in ["permit_stock", "asylum"] {
        assert!(
            persons_on_cluster(&log, t),
            "{t} not on the cluster:\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("survey sums computed on the cluster")
                && l.contains("source=survey ")),
        "the survey not summed on the cluster:\n{log}"
    );

    // A survey delivered as three files (strata, PSUs and SSUs straddling them), under
    // stratified, clustered, two-stage with FPCs and replicate designs: each file's sums made
    // on an executor and merged on the coordinator in file order, the local release's bits.
    let surveys = tmp.path().join("surveys");
    std::fs::create_dir_all(&surveys).unwrap();
    let files = crate::survey::survey_in_three_files(&surveys);
    let designs: Vec<(&str, &str, f64)> = crate::survey::DESIGNS
        .iter()
        .filter(|d| ["clus_fpc_90", "two_stage_fpc", "lonely_adjust", "jk1"].contains(&d.0))
        .copied()
        .collect();
    let tables: Vec<(String, String, String)> = crate::survey::DESIGN_TABLES
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    let spec = crate::survey::designs_spec_at(&surveys, &designs, |_| tables.clone(), &files);
    let log = assert_same_release(&spec, &surveys, &cluster, &[], &[], &[]);
    let summed = log
        .lines()
        .filter(|l| l.contains("survey sums computed on the cluster") && l.contains("parts=3 "))
        .count();
    assert_eq!(summed, designs.len(), "{log}");

    // A generated delivery of 10 M border crossings (rows: MIGSTAT_DISTRIBUTED_ROWS).
    let rows: u64 = std::env::var("MIGSTAT_DISTRIBUTED_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let big = tmp.path().join("big");
    let data = big.join("data");
    let o = migstat(
        &[
            "-q",
            "sample",
            "--out",
            data.to_str().unwrap(),
            "--scale",
            &(rows / 20_000).max(1).to_string(),
            "--only",
            "border",
        ],
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let spec = std::fs::read_to_string(repo().join("benches/duckdb/pipeline.toml"))
        .unwrap()
        .replace("@DATA@", data.to_str().unwrap())
        .replace("@REPO@", repo().to_str().unwrap());
    let spec = keyed(&spec);
    let spec_path = big.join("pipeline.toml");
    std::fs::write(&spec_path, spec).unwrap();
    assert_same_release(&spec_path, &big, &cluster, &["border_crossings"], &[], &[]);

    // Tables of persons over many buckets: the same delivery's travellers linked, immigrants
    // and emigrants under the 12-of-16-months rule (one protected by the cell key method, so
    // its persons' keys are made on the executors), the records in buckets of 1 M persons'
    // records on the cluster as locally.
    let spec = std::fs::read_to_string(repo().join("benches/duckdb/persons.toml"))
        .unwrap()
        .replace("@DATA@", data.to_str().unwrap())
        .replace("@REPO@", repo().to_str().unwrap())
        .replacen(
            "protect = { method = \"round\", base = 5 }",
            "protect = { method = \"cell_key\" }",
            1,
        );
    assert!(spec.contains("cell_key"));
    let persons = tmp.path().join("persons");
    std::fs::create_dir_all(&persons).unwrap();
    let spec_path = persons.join("pipeline.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let log = assert_same_release(
        &spec_path,
        &persons,
        &cluster,
        &["immigration", "emigration"],
        &[],
        &[],
    );
    for t in ["immigration", "emigration"] {
        assert!(
            persons_on_cluster(&log, t),
            "{t} not on the cluster:\n{log}"
        );
    }
    let _ = std::fs::remove_dir_all(&data);

    // The source pass sharded on the cluster (`--shards`): the sample's border crossings in
    // three files, the third repeating two crossings of the first and one of the second; each
    // file validated and harmonized inside an executor, the repeated keys found by the
    // cluster's group-by on the shards' key tables, the release the one local pass publishes.
    let sharded = tmp.path().join("sharded");
    let data = sharded.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(repo().join("sample_data")).unwrap() {
        let p = e.unwrap().path();
        let to = data.join(p.file_name().unwrap());
        if p.is_file() {
            std::fs::copy(&p, &to).unwrap();
        } else {
            // census/: the survey's calibration totals.
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let text = std::fs::read_to_string(data.join("border_crossings.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let records: Vec<&str> = lines.collect();
    let parts = [&records[..7000], &records[7000..13000], &records[13000..]];
    for (i, part) in parts.iter().enumerate() {
        let mut body = format!("{header}\n{}\n", part.join("\n"));
        if i == 2 {
            for r in [records[0], records[1], records[7010]] {
                body += r;
                body += "\n";
            }
        }
        let name = match i {
            0 => "border_crossings.csv".to_string(),
            n => format!("border_crossings_{}.csv", n + 1),
        };
        std::fs::write(data.join(name), body).unwrap();
    }
    let spec = std::fs::read_to_string(repo().join("pipelines/observatory.toml"))
        .unwrap()
        .replace("\"../sample_data/", &format!("\"{}/", data.display()))
        .replace("\"../", &format!("\"{}/", repo().display()));
    let spec_path = sharded.join("pipeline.toml");
    std::fs::write(&spec_path, keyed(&spec)).unwrap();
    let log = assert_same_release(
        &spec_path,
        &sharded,
        &cluster,
        &["border_crossings"],
        // Two jobs (by hand: the files' bytes cut in two after the second file), so that one
        // task passes two files.
        &[("MIGSTAT_SHARD_JOBS", "2")],
        &["--shards", "2"],
    );
    assert!(
        log.contains("source passed on the cluster, consecutive files in each task files=3 jobs=2"),
        "{log}"
    );
    assert!(
        log.contains("keys repeated across shards found on the cluster rows=6"),
        "{log}"
    );
    assert!(log.contains("duplicates_across_files=3"), "{log}");
}

#[test]
fn an_executor_with_another_key_fails_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = start(tmp.path(), &["another-key-of-twenty-chars"]);
    let spec = default_spec(tmp.path());
    let out = tmp.path().join("out");
    let o = run(&spec, &out, &format!("ballista://{}", cluster.scheduler));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("another protection key"), "{err}");
    assert!(
        !err.contains(KEY) && !err.contains("another-key-of"),
        "{err}"
    );
    assert!(!out.join("current").exists());
}

#[test]
fn an_unreachable_scheduler_is_an_engine_error() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = default_spec(tmp.path());
    let out = tmp.path().join("out");
    let o = run(
        &spec,
        &out,
        &format!("ballista://127.0.0.1:{}", free_port()),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Ballista scheduler"), "{err}");
    assert!(!out.join("current").exists());
}
