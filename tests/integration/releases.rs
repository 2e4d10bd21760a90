//! Nightly refreshes as the scheduler runs them: the real binary, killed at many points, run
//! twice at once, rerun with nothing changed, rerun with one delivery changed, and pruned.
//! What a reader may rely on is checked from the files: `out/current` always resolves to a
//! release whose files match its manifest (`migstat verify`), and the history records each run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{migstat, repo};

/// The default spec, with its deliveries copied to `dir/data` (so a test may change one), and
/// `extra` appended. Returns the spec's path.
fn spec_with_own_data(dir: &Path, extra: &str) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(repo().join("sample_data")).unwrap() {
        let p = e.unwrap().path();
        let to = data.join(p.file_name().unwrap());
        if p.is_file() {
            std::fs::copy(&p, &to).unwrap();
        } else if p.is_dir() {
            // census/: the margins the survey is calibrated to.
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let spec = std::fs::read_to_string(repo().join("pipelines/observatory.toml"))
        .unwrap()
        .replace("\"../sample_data/", &format!("\"{}/", data.display()))
        .replace("\"../", &format!("\"{}/", repo().display()))
        + extra;
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, spec).unwrap();
    path
}

fn run(spec: &Path, out: &Path, envs: &[(&str, &str)], extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "-q",
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    migstat(&args, envs)
}

fn current_id(out: &Path) -> Option<String> {
    migstat::release::current_id(out)
}

fn releases(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("releases"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `migstat verify OUT` passes and `current` resolves to a release holding a manifest.
fn assert_intact(out: &Path) {
    let o = migstat(&["verify", out.to_str().unwrap()], &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Independently of verify: every file the manifest lists has its recorded hash.
    let m = crate::manifest(out);
    for f in &m.outputs {
        let bytes = std::fs::read(out.join("current").join(&f.path)).unwrap();
        assert_eq!(
            blake3::hash(&bytes).to_hex().to_string(),
            f.blake3,
            "{}",
            f.path
        );
    }
}

#[test]
fn a_run_killed_anywhere_leaves_the_previous_release_current() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let out = tmp.path().join("out");
    let first = run(&spec, &out, &[], &[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let good = current_id(&out).unwrap();
    assert_intact(&out);

    // Named points: mid-write of a Parquet file, before the manifest, between the two renames
    // of publishing, and with the new symlink made but not yet renamed into place.
    for point in [
        "mid_parquet",
        "before_manifest",
        "before_switch",
        "mid_switch",
    ] {
        let o = run(
            &spec,
            &out,
            &[("MIGSTAT_FAULT", point)],
            &["--full-refresh"],
        );
        assert_ne!(o.status.code(), Some(0), "{point}: the run was not stopped");
        assert_eq!(current_id(&out).as_deref(), Some(good.as_str()), "{point}");
        assert_intact(&out);
    }
    // After the switch, the new release is current and complete.
    let o = run(
        &spec,
        &out,
        &[("MIGSTAT_FAULT", "after_switch")],
        &["--full-refresh"],
    );
    assert_ne!(o.status.code(), Some(0));
    let switched = current_id(&out).unwrap();
    assert_ne!(switched, good);
    assert_intact(&out);
    let good = switched;

    // SIGKILL at times spread over a whole run (a full run takes about a second here).
    let t0 = Instant::now();
    let full = run(&spec, &out, &[], &["--full-refresh"]);
    assert_eq!(full.status.code(), Some(0));
    let took = t0.elapsed();
    let good = {
        let _ = good;
        current_id(&out).unwrap()
    };
    for i in 0..8u32 {
        let delay = took.mul_f64(f64::from(i) / 8.0) + Duration::from_millis(5);
        let mut child = Command::new(env!("CARGO_BIN_EXE_migstat"))
            .args([
                "-q",
                "run",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--full-refresh",
            ])
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let now = current_id(&out).unwrap();
        if status.success() {
            // It finished before the kill: its release is current.
            assert_ne!(now, good);
        } else {
            assert!(
                now == good || releases(&out).contains(&now),
                "kill at {delay:?}"
            );
        }
        assert_intact(&out);
    }
    // The next run cleans up and succeeds.
    let last = run(&spec, &out, &[], &["--full-refresh"]);
    assert_eq!(
        last.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_intact(&out);
    assert!(
        !out.join(".staging").exists()
            || std::fs::read_dir(out.join(".staging")).unwrap().count() == 0
    );
    // Every release left is complete.
    for id in releases(&out) {
        let o = migstat(
            &["verify", out.join("releases").join(&id).to_str().unwrap()],
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{id}");
    }
}

#[test]
fn a_second_run_exits_75_or_waits_and_a_dead_holder_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let out = tmp.path().join("out");
    // Another run holds the directory: this test process takes the lock itself.
    let (lock, _) = migstat::release::Lock::acquire(&out, "holder-run", false).unwrap();
    let o = run(&spec, &out, &[], &[]);
    assert_eq!(o.status.code(), Some(75));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("locked by another migstat run")
            && err.contains("holder-run")
            && err.contains("--wait"),
        "{err}"
    );
    assert!(current_id(&out).is_none(), "nothing was published");
    let h = migstat::release::read_history(&out).unwrap();
    assert_eq!(
        (h.len(), h[0].status.name(), h[0].exit_code),
        (1, "locked", 75)
    );
    // A spec that does not compile is in the history too.
    let o = migstat(
        &[
            "-q",
            "run",
            "no-such-spec.toml",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(78));
    let h = migstat::release::read_history(&out).unwrap();
    assert_eq!(
        (h[1].status, h[1].exit_code),
        (migstat::manifest::RunStatus::Failed, 78)
    );

    // With --wait, the run starts when the holder lets go.
    let child = Command::new(env!("CARGO_BIN_EXE_migstat"))
        .args([
            "-q",
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--wait",
        ])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(current_id(&out).is_none(), "it waits");
    drop(lock);
    let waited = child.wait_with_output().unwrap();
    assert_eq!(
        waited.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert_intact(&out);

    // Two runs at once, both waiting: one publishes, the other finds it up to date; no corruption.
    let spawn = |wait: bool| {
        let mut args = vec![
            "-q",
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--full-refresh",
        ];
        if wait {
            args.push("--wait");
        }
        Command::new(env!("CARGO_BIN_EXE_migstat"))
            .args(args)
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(true), spawn(true));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    assert_intact(&out);
    // And without --wait, one of two simultaneous runs exits 75 or both run one after the other.
    let (mut a, mut b) = (spawn(false), spawn(false));
    let codes = [a.wait().unwrap().code(), b.wait().unwrap().code()];
    assert!(codes.contains(&Some(0)), "{codes:?}");
    assert!(
        codes.iter().all(|c| *c == Some(0) || *c == Some(75)),
        "{codes:?}"
    );
    assert_intact(&out);

    // A lock record left by a killed run (no process holds the lock): taken over with a warning.
    std::fs::write(
        out.join(".lock"),
        "pid 4194300, started 12.00 s after boot, run killed-run",
    )
    .unwrap();
    let o = migstat(
        &[
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("killed without cleaning up") && err.contains("killed-run"),
        "{err}"
    );
}

#[test]
fn reruns_recompute_only_what_changed_and_history_records_every_run() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("[publish]\n", "[publish]\nkeep_releases = 2\n");
    std::fs::write(&spec, text).unwrap();
    let out = tmp.path().join("out");

    let t0 = Instant::now();
    let full = run(&spec, &out, &[], &[]);
    let full_time = t0.elapsed();
    assert_eq!(
        full.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let first = crate::manifest(&out);

    // Nothing changed: nothing recomputed, no new release.
    let t0 = Instant::now();
    let again = migstat(
        &[
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let rerun_time = t0.elapsed();
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("up to date"));
    assert_eq!(releases(&out), vec![first.run_id.clone()]);
    println!("full run {full_time:?}, unchanged rerun {rerun_time:?}");
    assert!(
        rerun_time < full_time / 2,
        "{rerun_time:?} vs {full_time:?}"
    );

    // One delivery changes (a new trafficking referral): only its source and table recompute.
    let data = tmp.path().join("data/trafficking_referrals.csv");
    let text = std::fs::read_to_string(&data).unwrap();
    // A new referral of 2024 (its own id, so it is accepted).
    std::fs::write(
        &data,
        format!("{text}TR-99999,F,30,GIN,labour,15/06/2024,ONG,\n"),
    )
    .unwrap();
    let changed = run(&spec, &out, &[], &[]);
    assert_eq!(
        changed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let second = crate::manifest(&out);
    for s in &second.sources {
        assert_eq!(s.reused, s.id != "trafficking", "{}", s.id);
    }
    // Each SDMX code list keeps its version while its codes and names stay the same, and takes
    // the next one when they change (the unit tests of `sdmx::versions` change one).
    let lists = |release: &Path| -> BTreeMap<String, (String, String)> {
        let xml = std::fs::read_to_string(release.join("public/sdmx/structure.xml")).unwrap();
        xml.split("<str:Codelist id=\"")
            .skip(1)
            .map(|part| {
                // Keyed by agency too: `SDMX:CL_FREQ` and migstat's own `CL_FREQ` may both be there.
                let a = &part[part.find("agencyID=\"").unwrap() + 10..];
                let id = format!(
                    "{}:{}",
                    &a[..a.find('"').unwrap()],
                    &part[..part.find('"').unwrap()]
                );
                let v = &part[part.find("version=\"").unwrap() + 9..];
                let version = v[..v.find('"').unwrap()].to_string();
                let body = part[part.find('>').unwrap()..part.find("</str:Codelist>").unwrap()]
                    .to_string();
                (id, (version, body))
            })
            .collect()
    };
    let (before, after) = (
        lists(&out.join("releases").join(&first.run_id)),
        lists(&out.join("current")),
    );
    assert!(!after.is_empty());
    for (id, (v, body)) in &after {
        if let Some((v0, body0)) = before.get(id) {
            if body == body0 {
                assert_eq!(v, v0, "{id}: same codes, same version");
            } else {
                assert_ne!(v, v0, "{id}: new codes, new version");
            }
        }
    }
    let t = second
        .sources
        .iter()
        .find(|s| s.id == "trafficking")
        .unwrap();
    let t0 = first
        .sources
        .iter()
        .find(|s| s.id == "trafficking")
        .unwrap();
    assert_eq!(t.rows_read, t0.rows_read + 1);
    assert_eq!(t.rows_accepted, t0.rows_accepted + 1);
    // Only the changed source's stages ran (and the documents, which cover the release).
    assert!(
        second
            .seconds
            .keys()
            .all(|k| k.contains("trafficking") || k == "documents"),
        "{:?}",
        second.seconds
    );
    // Files of unchanged sources are the previous ones; trafficking's differ.
    let hash = |m: &migstat::runner::Manifest, p: &str| {
        m.outputs
            .iter()
            .find(|f| f.path == p)
            .map(|f| f.blake3.clone())
    };
    // (Release-wide documents — codebook, data package, SDMX structures, report — describe every
    // table and change with any of them.)
    let release_wide = |p: &str| {
        p.starts_with("report/")
            || p.starts_with("public/codebook")
            || p.starts_with("public/metadata/")
            || p == "public/sdmx/metadata.xml"
            || [
                "public/codebook.md",
                "public/datapackage.json",
                "public/sdmx/structure.xml",
            ]
            .contains(&p)
    };
    for f in first
        .outputs
        .iter()
        .filter(|f| !f.path.contains("trafficking") && !release_wide(&f.path))
    {
        assert_eq!(hash(&second, &f.path), Some(f.blake3.clone()), "{}", f.path);
    }
    assert_ne!(
        hash(
            &first,
            "restricted/accepted/trafficking/delivery=000000/part-0.parquet"
        ),
        hash(
            &second,
            "restricted/accepted/trafficking/delivery=000000/part-0.parquet"
        )
    );
    assert_intact(&out);
    // The same outputs as a full recompute of the same inputs.
    let fresh = tmp.path().join("fresh");
    assert_eq!(run(&spec, &fresh, &[], &[]).status.code(), Some(0));
    let full_again = crate::manifest(&fresh);
    // All but the report pages, whose trend shows the output directory's own history of runs.
    let files = |m: &migstat::runner::Manifest| {
        m.outputs
            .iter()
            .filter(|f| !f.path.starts_with("report/"))
            .map(|f| (f.path.clone(), f.blake3.clone()))
            .collect::<Vec<_>>()
    };
    // …except trafficking's published period, frozen at its first publication (a +1 must not
    // show): the fresh recompute, with no earlier publication, publishes the new truth.
    let frozen = |p: &str| {
        p.contains("trafficking")
            && (p.starts_with("public/")
                || p.starts_with("restricted/audit/")
                || p.starts_with("restricted/ledger/"))
    };
    let unfrozen = |m: &migstat::runner::Manifest| {
        files(m)
            .into_iter()
            .filter(|(p, _)| !frozen(p))
            .collect::<Vec<_>>()
    };
    assert_eq!(unfrozen(&second), unfrozen(&full_again));
    for p in [
        "public/tables/trafficking/2024/data.parquet",
        "public/sdmx/trafficking.csv",
    ] {
        assert_eq!(hash(&second, p), hash(&first, p), "{p} is frozen");
        assert_ne!(hash(&second, p), hash(&full_again, p), "{p}");
    }
    // Every year frozen; 2024 has the change waiting for a revision, the others none.
    for s in second
        .protection
        .iter()
        .filter(|s| s.table == "trafficking")
    {
        assert!(s.frozen, "{s:?}");
        assert_eq!(s.pending_changes > 0, s.ref_period == "2024", "{s:?}");
    }
    assert!(
        files(&second)
            .iter()
            .any(|(p, _)| p == "public/codebook.md")
    );

    // A third release: keep_releases = 2 prunes the first.
    assert_eq!(
        run(&spec, &out, &[], &["--full-refresh"]).status.code(),
        Some(0)
    );
    let third = crate::manifest(&out);
    assert_eq!(
        releases(&out),
        [second.run_id.clone(), third.run_id.clone()]
    );

    // A delivery beyond its tolerance: rejected, the previous release stays current.
    std::fs::write(&data, format!("{text}{}", "x,y,z\n".repeat(200))).unwrap();
    let bad = run(&spec, &out, &[], &[]);
    assert_eq!(bad.status.code(), Some(65));
    assert_eq!(current_id(&out), Some(third.run_id.clone()));
    assert_intact(&out);

    // The history: every run, in order, with its outcome.
    let h = migstat::release::read_history(&out).unwrap();
    let statuses: Vec<(&str, i32)> = h.iter().map(|r| (r.status.name(), r.exit_code)).collect();
    assert_eq!(
        statuses,
        [
            ("succeeded", 0),
            ("up_to_date", 0),
            ("succeeded", 0),
            ("succeeded", 0),
            ("rejected", 65),
        ]
    );
    assert!(h[2].sources.iter().any(|s| s.reused));
    assert!(h[4].error.as_deref().unwrap_or("").contains("trafficking"));
    assert!(h[0].tables_published.contains(&"asylum".to_string()));
    // Each table once, not once per period.
    assert!(
        h[0].tables_published.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        h[0].tables_published
    );
    let shown = migstat(&["history", out.to_str().unwrap(), "-n", "3"], &[]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.contains("rejected") && text.contains(&third.run_id),
        "{text}"
    );
}

#[test]
fn a_new_record_cannot_be_singled_out_from_two_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let out = tmp.path().join("out");
    let copy = |name: &str| {
        let to = tmp.path().join(name);
        let from = out.join("releases").join(current_id(&out).unwrap());
        let ok = std::process::Command::new("cp")
            .args(["-r", from.to_str().unwrap(), to.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(ok.success());
        to
    };
    assert_eq!(run(&spec, &out, &[], &[]).status.code(), Some(0));
    let first = copy("first");
    // One rare person: a boy of 15 referred for forced criminality.
    let data = tmp.path().join("data/trafficking_referrals.csv");
    let text = std::fs::read_to_string(&data).unwrap();
    std::fs::write(
        &data,
        format!("{text}TR-99998,M,15,GIN,forced_criminality,01/06/2024,ONG,\n"),
    )
    .unwrap();
    let table = "public/tables/trafficking/2024/data.parquet";
    // The nightly refresh (freeze): the published period does not move by the new person.
    assert_eq!(run(&spec, &out, &[], &[]).status.code(), Some(0));
    let frozen = copy("frozen");
    assert_eq!(
        std::fs::read(first.join(table)).unwrap(),
        std::fs::read(frozen.join(table)).unwrap()
    );
    // A revision: a new vintage protected with the first; an intruder holding both releases
    // cannot tell which cells the new person is in.
    let o = run(&spec, &out, &[], &["--revise", "trafficking"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let revised = copy("revised");
    assert_ne!(
        std::fs::read(first.join(table)).unwrap(),
        std::fs::read(revised.join(table)).unwrap(),
        "the revision publishes the new vintage"
    );
    let o = std::process::Command::new("python3")
        .arg(repo().join("tests/attacker.py"))
        .arg(&first)
        .arg(&revised)
        .arg("--methods=suppress")
        .arg("--groups=trafficking")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && stdout.contains(", 0 disclosures")
            && !stdout.contains("attack: 0 sensitive"),
        "attacker:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A backfill: `--period` revises the named periods only; the others stay as published, their
/// changes waiting (reported as pending) for their own revision.
#[test]
fn a_backfill_revises_only_the_named_periods() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let out = tmp.path().join("out");
    assert_eq!(run(&spec, &out, &[], &[]).status.code(), Some(0));
    let first = crate::manifest(&out);
    // Late records for 2023 and 2024 (six each, so that the cells move whatever the rule).
    let data = tmp.path().join("data/trafficking_referrals.csv");
    let mut text = std::fs::read_to_string(&data).unwrap();
    for (i, year) in [(0, 2023), (1, 2024)] {
        for k in 0..6 {
            text.push_str(&format!(
                "TR-9{i}{k:03},F,30,NGA,sexual,01/06/{year},ONG,\n"
            ));
        }
    }
    std::fs::write(&data, text).unwrap();
    // An unknown period is a usage error, before anything is read.
    let bad = run(&spec, &out, &[], &["--period", "1999"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--period 1999"));
    let o = run(&spec, &out, &[], &["--period", "2023"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let second = crate::manifest(&out);
    let hash = |m: &migstat::runner::Manifest, p: &str| {
        m.outputs
            .iter()
            .find(|o| o.path == p)
            .map(|o| o.blake3.clone())
            .unwrap_or_else(|| panic!("{p} not in the release"))
    };
    let part = |y: i32| format!("public/tables/trafficking/{y}/data.parquet");
    assert_ne!(
        hash(&second, &part(2023)),
        hash(&first, &part(2023)),
        "2023 revised"
    );
    assert_eq!(
        hash(&second, &part(2024)),
        hash(&first, &part(2024)),
        "2024 frozen"
    );
    for s in second
        .protection
        .iter()
        .filter(|s| s.table == "trafficking")
    {
        match s.ref_period.as_str() {
            "2023" => assert!(!s.frozen, "{s:?}"),
            "2024" => assert!(s.frozen && s.pending_changes > 0, "{s:?}"),
            _ => assert!(s.frozen, "{s:?}"),
        }
    }
}

#[test]
fn a_sigterm_or_sigint_stops_a_run_cleanly() {
    // A `systemctl stop` (SIGTERM) while the first source is written, a Ctrl-C (SIGINT) just
    // before the release is published: each run stops at its next check, removes its staging
    // directory, leaves the current release as it was, writes a history line naming the
    // signal, and exits as a shell reports a signal (143, 130). The signal is real: migstat
    // raises it at that point (MIGSTAT_FAULT=sigterm@<point>), and its handler takes it.
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let out = tmp.path().join("out");
    let first = run(&spec, &out, &[], &[]);
    assert_eq!(first.status.code(), Some(0));
    let good = current_id(&out).unwrap();
    for (fault, code, name) in [
        ("sigterm@mid_parquet", 143, "SIGTERM"),
        ("sigint@before_manifest", 130, "SIGINT"),
    ] {
        let o = run(
            &spec,
            &out,
            &[("MIGSTAT_FAULT", fault)],
            &["--full-refresh"],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{fault}: {err}");
        assert!(
            err.contains(&format!("stopped by {name}")),
            "{fault}: {err}"
        );
        assert_eq!(current_id(&out).as_deref(), Some(good.as_str()), "{fault}");
        assert_intact(&out);
        let staging: Vec<_> = std::fs::read_dir(out.join(".staging"))
            .map(|d| d.collect())
            .unwrap_or_default();
        assert!(staging.is_empty(), "{fault}: staging left: {staging:?}");
        let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
        let last: serde_json::Value =
            serde_json::from_str(history.lines().last().unwrap()).unwrap();
        assert_eq!(last["status"], "interrupted", "{fault}");
        assert_eq!(last["exit_code"], code, "{fault}");
        assert!(
            last["error"].as_str().unwrap().contains(name),
            "{fault}: {last}"
        );
    }
    // The next run goes as usual.
    let again = run(&spec, &out, &[], &["--full-refresh"]);
    assert_eq!(again.status.code(), Some(0));
    assert_ne!(current_id(&out).as_deref(), Some(good.as_str()));
}

#[test]
fn a_query_during_switching_releases_reads_one_release() {
    // Runs switch `current` between two contents (a delivery with and without six late
    // records, its table revised each time) while `migstat query` reads the table again and
    // again: every answer is the whole table of one release that was published, and none
    // fails (the query resolves `current` once, then reads that release's own directory).
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    // Every release kept, to compare each answer with the release it came from.
    let text = std::fs::read_to_string(&spec).unwrap().replacen(
        "provisional_months = 3",
        "provisional_months = 3\nkeep_releases = 50",
        1,
    );
    std::fs::write(&spec, text).unwrap();
    let out = tmp.path().join("out");
    let data = tmp.path().join("data/trafficking_referrals.csv");
    let text_a = std::fs::read_to_string(&data).unwrap();
    let mut text_b = text_a.clone();
    for k in 0..6 {
        text_b.push_str(&format!("TR-99{k:03},F,30,NGA,sexual,01/06/2024,ONG,\n"));
    }
    let query = |out: &Path| -> std::process::Output {
        migstat(
            &[
                "query",
                "--release",
                out.to_str().unwrap(),
                "--format",
                "csv",
                "SELECT * FROM trafficking ORDER BY ALL",
            ],
            &[],
        )
    };
    let mut answers = Vec::new();
    for text in [&text_b, &text_a] {
        std::fs::write(&data, text).unwrap();
        // Each run publishes the trafficking table anew (its periods are revised).
        assert_eq!(
            run(&spec, &out, &[], &["--revise", "trafficking"])
                .status
                .code(),
            Some(0)
        );
        let q = query(&out);
        assert_eq!(q.status.code(), Some(0));
        answers.push(String::from_utf8_lossy(&q.stdout).into_owned());
    }
    assert!(
        answers[0] != answers[1],
        "the two contents publish different tables"
    );
    // A DuckDB reader as the README shows (resolve the link, then glob under the release),
    // looping in its own process while the runs switch.
    let stop = tmp.path().join("stop-reading");
    let duck = Command::new("python3")
        .arg(repo().join("tests/switching_reader.py"))
        .arg(&out)
        .arg(&stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let switcher = {
        let (spec, out, data) = (spec.clone(), out.clone(), data.clone());
        let texts = [text_b.clone(), text_a.clone()];
        std::thread::spawn(move || {
            for i in 0..8 {
                std::fs::write(&data, &texts[i % 2]).unwrap();
                let o = run(&spec, &out, &[], &["--revise", "trafficking"]);
                assert_eq!(o.status.code(), Some(0));
            }
        })
    };
    let mut got: Vec<String> = Vec::new();
    while !switcher.is_finished() {
        let q = query(&out);
        assert_eq!(
            q.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&q.stderr)
        );
        got.push(String::from_utf8_lossy(&q.stdout).into_owned());
    }
    switcher.join().unwrap();
    std::fs::write(&stop, "").unwrap();
    let duck = duck.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&duck.stdout);
    assert!(
        duck.status.success() && said.contains("switching reader:"),
        "the DuckDB reader saw errors or mixed releases:\n{said}\n{}",
        String::from_utf8_lossy(&duck.stderr)
    );
    println!("{said}");
    // The tables of every release published, each read on its own.
    let mut published: Vec<String> = Vec::new();
    for e in std::fs::read_dir(out.join("releases")).unwrap() {
        let q = query(&e.unwrap().path());
        assert_eq!(q.status.code(), Some(0));
        published.push(String::from_utf8_lossy(&q.stdout).into_owned());
    }
    assert_eq!(published.len(), 10, "two releases, then eight switches");
    for (i, a) in got.iter().enumerate() {
        assert!(
            published.contains(a),
            "answer {i} ({} bytes) is no release's table",
            a.len()
        );
    }
    assert!(!got.is_empty());
    eprintln!("{} queries over 8 switches, each one release's", got.len());
}

/// (file, record, line, field, rule) of each row of a quarantine file, sorted.
pub(crate) fn quarantine_rows(path: &Path) -> Vec<(String, u64, Option<u64>, String, String)> {
    let q = crate::read_parquet(path);
    let text = |name: &str, i: usize| {
        q.column(name)
            .unwrap()
            .str()
            .unwrap()
            .get(i)
            .unwrap_or_default()
            .to_string()
    };
    let int = |name: &str, i: usize| {
        q.column(name)
            .unwrap()
            .cast(&polars::prelude::DataType::UInt64)
            .unwrap()
            .u64()
            .unwrap()
            .get(i)
    };
    let mut rows: Vec<_> = (0..q.height())
        .map(|i| {
            (
                text("file", i),
                int("record", i).unwrap(),
                int("line", i),
                text("field", i),
                text("rule", i),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_small_key_window_accepts_the_same_rows_and_publishes_the_same_tables() {
    let tmp = tempfile::tempdir().unwrap();
    // Chunks of 400 rows and, below, windows of 700 keys: key sets spill every other chunk.
    let spec = spec_with_own_data(tmp.path(), "");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("chunk_rows = 250000", "chunk_rows = 400");
    assert!(text.contains("chunk_rows = 400"));
    std::fs::write(&spec, text).unwrap();
    // The first three crossings again at the end of their file (records 20001–20003): their
    // first occurrences are tens of runs back.
    let border = tmp.path().join("data/border_crossings.csv");
    let bytes = std::fs::read(&border).unwrap();
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(
        lines.len(),
        20001,
        "the sample's header and 20000 crossings"
    );
    let mut grown = bytes.clone();
    if !grown.ends_with(b"\n") {
        grown.extend_from_slice(b"\r\n");
    }
    for l in &lines[1..4] {
        grown.extend_from_slice(l);
    }
    std::fs::write(&border, grown).unwrap();

    let out_default = tmp.path().join("out-default");
    let out_small = tmp.path().join("out-small");
    let o = run(&spec, &out_default, &[], &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&spec, &out_small, &[("MIGSTAT_KEY_WINDOW", "700")], &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let (a, b) = (crate::manifest(&out_default), crate::manifest(&out_small));
    // Every file but the quarantines byte for byte: accepted rows, restricted and public tables.
    let files = all_but_quarantine;
    assert!(files(&a).iter().any(|(p, _)| p.starts_with("public/")));
    assert_eq!(files(&a), files(&b));
    // The same rows accounted the same way, source by source.
    let counts = |m: &migstat::runner::Manifest| -> Vec<(String, u64, u64, u64, String)> {
        m.sources
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    s.rows_read,
                    s.rows_accepted,
                    s.rows_quarantined,
                    format!("{:?}", s.quarantine_by_rule),
                )
            })
            .collect()
    };
    assert_eq!(counts(&a), counts(&b));
    // The same quarantine rows (their messages may name another earlier occurrence).
    for m in &a.sources {
        let q = format!("quarantine/{}.parquet", m.id);
        let (qa, qb) = (
            quarantine_rows(&out_default.join("current").join(&q)),
            quarantine_rows(&out_small.join("current").join(&q)),
        );
        assert_eq!(qa, qb, "{q}");
    }
    // The three repeated crossings are among them, as primary-key duplicates.
    let border_id = &a
        .sources
        .iter()
        .find(|s| {
            s.files
                .iter()
                .any(|f| f.path.ends_with("border_crossings.csv"))
        })
        .unwrap()
        .id;
    let q = quarantine_rows(
        &out_small
            .join("current/quarantine")
            .join(format!("{border_id}.parquet")),
    );
    let repeated: Vec<u64> = q
        .iter()
        .filter(|r| r.0.ends_with("border_crossings.csv") && r.4 == "primary_key")
        .map(|r| r.1)
        .filter(|r| *r > 20000)
        .collect();
    assert_eq!(repeated, vec![20001, 20002, 20003]);
    // The spilled runs are gone with the pass.
    assert!(!out_small.join("current/.keys").exists());
}

/// Tables of persons built bucket by bucket (`MIGSTAT_PERSON_BUCKET_ROWS`) publish the same
/// release, byte for byte, as from the whole file; no bucket is left behind.
#[test]
fn tables_of_persons_in_small_buckets_publish_the_same_release() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let (whole, split) = (tmp.path().join("out-whole"), tmp.path().join("out-split"));
    for (out, envs) in [
        (&whole, vec![]),
        (&split, vec![("MIGSTAT_PERSON_BUCKET_ROWS", "1499")]),
    ] {
        let o = run(&spec, out, &envs, &[]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (a, b) = (crate::manifest(&whole), crate::manifest(&split));
    let files = |m: &migstat::runner::Manifest| -> Vec<(String, String)> {
        m.outputs
            .iter()
            .map(|f| (f.path.clone(), f.blake3.clone()))
            .collect()
    };
    assert!(
        files(&a)
            .iter()
            .any(|(p, _)| p.starts_with("public/tables/permit_stock"))
    );
    assert_eq!(files(&a), files(&b));
    let stray: Vec<String> = walk(&split)
        .into_iter()
        .filter(|p| p.contains(".persons"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn tables_counted_after_the_pass_publish_the_same_release() {
    // What an engine that runs elsewhere does (`engine::Local::after_pass` is its reference):
    // every table of records and events, group union and survey sum counted from the accepted
    // file after the pass instead of while the source streams. A small key window makes late
    // duplicates, whose rewrite of the accepted file the recount must see.
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let (during, after) = (tmp.path().join("out-during"), tmp.path().join("out-after"));
    for (out, args) in [
        (&during, vec![]),
        (&after, vec!["--engine", "local-after-pass"]),
    ] {
        let o = run(&spec, out, &[("MIGSTAT_KEY_WINDOW", "700")], &args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (a, b) = (crate::manifest(&during), crate::manifest(&after));
    let files = |m: &migstat::runner::Manifest| -> Vec<(String, String)> {
        m.outputs
            .iter()
            .map(|f| (f.path.clone(), f.blake3.clone()))
            .collect()
    };
    // The sample's release has tables of events (border crossings), survey estimates and
    // protected groups: each kind of aggregate the engine computes.
    for table in [
        "border_crossings",
        "survey_population",
        "permit_stock",
        "asylum",
    ] {
        assert!(
            files(&a)
                .iter()
                .any(|(p, _)| p.starts_with(&format!("public/tables/{table}"))),
            "no {table} in {:?}",
            files(&a)
        );
    }
    assert_eq!(files(&a), files(&b));
    assert_eq!(a.sources.len(), b.sources.len());
    for (x, y) in a.sources.iter().zip(&b.sources) {
        assert_eq!(
            (x.rows_read, x.rows_accepted, x.rows_quarantined),
            (y.rows_read, y.rows_accepted, y.rows_quarantined)
        );
    }
}

#[test]
fn an_unknown_engine_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let out = tmp.path().join("out");
    let o = run(&spec, &out, &[], &["--engine", "spark://x\n:1"]);
    assert_eq!(
        o.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown engine"), "{err}");
    assert!(!out.join("current").exists());
}

/// Every path under `dir`, relative to it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
        }
    }
    out
}

/// Split the CSV `from` (a header and one record per line) into files named `to_names` in the
/// same directory, `sizes[i]` records each (the last takes the rest); `from` is removed unless
/// it is one of them. Returns each file's records as lines.
fn split_csv(from: &Path, to_names: &[&str], sizes: &[usize]) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(from).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let records: Vec<String> = lines.map(str::to_string).collect();
    let mut out = Vec::new();
    let mut at = 0;
    for i in 0..to_names.len() {
        let n = sizes.get(i).copied().unwrap_or(records.len() - at);
        out.push(records[at..at + n].to_vec());
        at += n;
    }
    std::fs::remove_file(from).unwrap();
    for (name, recs) in to_names.iter().zip(&out) {
        let mut body = header.clone() + "\n";
        for r in recs {
            body += r;
            body += "\n";
        }
        std::fs::write(from.with_file_name(name), body).unwrap();
    }
    out
}

/// Each delivery file of a source passed as a shard of its own (`--shards N`, a `migstat
/// shard` process per file) publishes the release one pass over the files publishes, byte for
/// byte, with the same row accounting: a key repeated in a later file is a duplicate of its
/// first occurrence in file order whichever process saw it, also when the shards spill their
/// key sets.
/// A column of `df` as text.
fn text_column(df: &polars::prelude::DataFrame, name: &str) -> polars::prelude::StringChunked {
    df.column(name)
        .unwrap()
        .cast(&polars::prelude::DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .clone()
}

#[test]
fn sources_passed_one_file_per_shard_publish_what_one_pass_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_own_data(tmp.path(), "");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("chunk_rows = 250000", "chunk_rows = 400")
        .replace("/survey_persons.csv\"", "/survey_persons*.csv\"");
    assert!(text.contains("chunk_rows = 400") && text.contains("survey_persons*.csv"));
    std::fs::write(&spec, text).unwrap();
    let data = tmp.path().join("data");
    // Border crossings in three files of 8000, 6000 and 6000 records; the third then repeats
    // the first three crossings of the first file and the fifth of the second.
    let border = split_csv(
        &data.join("border_crossings.csv"),
        &[
            "border_crossings.csv",
            "border_crossings_2.csv",
            "border_crossings_3.csv",
        ],
        &[8000, 6000],
    );
    let third = data.join("border_crossings_3.csv");
    let mut body = std::fs::read_to_string(&third).unwrap();
    for r in [&border[0][0], &border[0][1], &border[0][2], &border[1][4]] {
        body += r;
        body += "\n";
    }
    std::fs::write(&third, body).unwrap();
    // The survey in two files: its design's sums put together from both.
    split_csv(
        &data.join("survey_persons.csv"),
        &["survey_persons_1.csv", "survey_persons_2.csv"],
        &[700],
    );

    // (output directory, environment, arguments) of each run.
    type Runs<'a> = Vec<(PathBuf, Vec<(&'a str, &'a str)>, Vec<&'a str>)>;
    let outs: Runs<'_> = vec![
        (tmp.path().join("out-one"), vec![], vec![]),
        (tmp.path().join("out-2"), vec![], vec!["--shards", "2"]),
        (
            tmp.path().join("out-3-spilled"),
            vec![("MIGSTAT_KEY_WINDOW", "700")],
            vec!["--shards", "3"],
        ),
    ];
    for (out, envs, extra) in &outs {
        let o = run(&spec, out, envs, extra);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{extra:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // No shard's files are left behind.
        let stray: Vec<String> = walk(out)
            .into_iter()
            .filter(|p| p.contains(".shards") || p.contains(".keys"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }
    // The shards on threads of the library's caller (`Shards::Threads`), under the same spec
    // (and so the same protection key).
    let threads = tmp.path().join("out-threads");
    let plan = migstat::spec::compile(&spec).unwrap();
    let manifest = migstat::runner::run(
        &plan,
        &migstat::runner::RunOptions {
            out_dir: threads.clone(),
            shards: migstat::runner::shard::Shards::Threads(2),
            ..Default::default()
        },
    );
    assert!(manifest.is_ok(), "{:?}", manifest.err());
    let mut outs = outs;
    outs.push((threads, vec![], vec!["(threads)"]));
    let manifests: Vec<_> = outs.iter().map(|(o, _, _)| crate::manifest(o)).collect();
    let files = all_but_quarantine;
    let counts = |m: &migstat::runner::Manifest| -> Vec<(String, u64, u64, u64, String, usize)> {
        m.sources
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    s.rows_read,
                    s.rows_accepted,
                    s.rows_quarantined,
                    format!("{:?} {:?}", s.quarantine_by_rule, s.unmapped_codes),
                    s.files.len(),
                )
            })
            .collect()
    };
    let border_id = manifests[0]
        .sources
        .iter()
        .find(|s| s.files.len() == 3)
        .map(|s| s.id.clone())
        .unwrap();
    assert!(
        files(&manifests[0])
            .iter()
            .any(|(p, _)| p.starts_with("public/tables/"))
    );
    for m in &manifests[1..] {
        assert_eq!(files(&manifests[0]), files(m));
        assert_eq!(counts(&manifests[0]), counts(m));
    }
    // The border crossings' accepted records: one part per delivery file, each holding only
    // its file's rows, and as many as the file's records less its quarantined ones (the three
    // repeats of the first file and the one of the second among them, records 6001–6004).
    for (out, _, extra) in &outs {
        let current = out.join("current");
        let parts = crate::read_accepted_parts(&current, &border_id);
        assert_eq!(parts.len(), 3, "{extra:?}");
        let q = crate::read_parquet(&current.join(format!("quarantine/{border_id}.parquet")));
        for (part, (name, records)) in parts.iter().zip([
            ("border_crossings.csv", 8000u64),
            ("border_crossings_2.csv", 6000),
            ("border_crossings_3.csv", 6004),
        ]) {
            let df = crate::read_parquet(part);
            let files = df.column("_file").unwrap().str().unwrap().clone();
            assert!(
                files.iter().all(|f| f.unwrap().ends_with(name)),
                "{extra:?} {}",
                part.display()
            );
            let max_record = df.column("_record").unwrap().max_reduce().unwrap();
            assert!(
                max_record.value().extract::<u64>().unwrap() <= 6000
                    || name != "border_crossings_3.csv",
                "{extra:?}: a repeat left in the third part"
            );
            let (qf, qr) = (text_column(&q, "file"), text_column(&q, "record"));
            let quarantined = qf
                .iter()
                .zip(qr.iter())
                .filter(|(f, _)| {
                    f.unwrap().ends_with(name) && !f.unwrap().ends_with(&format!("_{name}"))
                })
                .map(|(_, r)| r.unwrap().to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .len() as u64;
            assert_eq!(
                df.height() as u64 + quarantined,
                records,
                "{extra:?} {name}"
            );
        }
    }
    for s in &manifests[0].sources {
        let q = format!("quarantine/{}.parquet", s.id);
        let first = quarantine_rows(&outs[0].0.join("current").join(&q));
        for (out, _, extra) in &outs[1..] {
            assert_eq!(
                first,
                quarantine_rows(&out.join("current").join(&q)),
                "{q} {extra:?}"
            );
        }
    }
    // The four repeats, hand-placed: records 6001–6004 of the third file, primary-key
    // duplicates naming their first occurrences in the other files.
    let q = crate::read_parquet(
        &outs[2]
            .0
            .join("current/quarantine")
            .join(format!("{border_id}.parquet")),
    );
    let col = |name: &str| text_column(&q, name);
    let (file, record, rule, message) = (col("file"), col("record"), col("rule"), col("message"));
    let mut repeats: Vec<(String, String)> = (0..q.height())
        .filter(|&i| {
            file.get(i).unwrap().ends_with("border_crossings_3.csv")
                && record.get(i).unwrap().parse::<u64>().unwrap() > 6000
        })
        .map(|i| {
            assert_eq!(rule.get(i), Some("primary_key"));
            (
                record.get(i).unwrap().to_string(),
                message.get(i).unwrap().to_string(),
            )
        })
        .collect();
    repeats.sort();
    let expected = [
        ("6001", "border_crossings.csv record 1"),
        ("6002", "border_crossings.csv record 2"),
        ("6003", "border_crossings.csv record 3"),
        ("6004", "border_crossings_2.csv record 5"),
    ];
    assert_eq!(repeats.len(), 4, "{repeats:?}");
    for ((r, m), (er, em)) in repeats.iter().zip(expected) {
        assert_eq!(r, er);
        assert!(m.ends_with(em), "{m}");
    }
}

/// A spec in `d` of one source, `people`: the files `data_*.csv` of `id` (the primary key) and
/// an integer `age`.
fn people_spec(d: &Path) -> PathBuf {
    std::fs::write(
        d.join("s.json"),
        r#"{"fields": [{"name": "id"}, {"name": "age", "type": "integer"}], "primaryKey": "id"}"#,
    )
    .unwrap();
    let spec = d.join("p.toml");
    std::fs::write(
        &spec,
        "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[sources.people]\npath = \"data_*.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n",
    )
    .unwrap();
    spec
}

/// Every output of a release but its quarantine, with its blake3.
fn all_but_quarantine(m: &migstat::runner::Manifest) -> Vec<(String, String)> {
    m.outputs
        .iter()
        .filter(|f| !f.path.starts_with("quarantine/"))
        .map(|f| (f.path.clone(), f.blake3.clone()))
        .collect()
}

/// A shard that fails stops the run as one pass would stop at that file: the same exit code,
/// its message (from the shard's log) naming the file, nothing published, no shard left.
#[test]
fn a_failing_shard_fails_the_run_as_one_pass_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("data_1.csv"), "id,age\na,1\nb,2\n").unwrap();
    std::fs::write(d.join("data_2.csv"), "id,age,age\nc,3,3\n").unwrap();
    std::fs::write(d.join("data_3.csv"), "id,age\nd,4\n").unwrap();
    let spec = people_spec(d);
    let one = run(&spec, &d.join("out-one"), &[], &[]);
    let sharded = run(&spec, &d.join("out-sharded"), &[], &["--shards", "2"]);
    let (e1, e2) = (
        String::from_utf8_lossy(&one.stderr),
        String::from_utf8_lossy(&sharded.stderr),
    );
    assert_eq!(one.status.code(), Some(65), "{e1}");
    assert_eq!(sharded.status.code(), Some(65), "{e2}");
    for e in [&e1, &e2] {
        assert!(e.contains("column `age` appears twice"), "{e}");
        assert!(e.contains("data_2.csv"), "{e}");
    }
    assert!(
        e2.contains("the shard of file 1 (data_2.csv) of source `people` failed"),
        "{e2}"
    );
    assert!(current_id(&d.join("out-sharded")).is_none());
    let stray: Vec<String> = walk(&d.join("out-sharded"))
        .into_iter()
        .filter(|p| p.contains(".shards"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn many_small_files_are_passed_several_to_a_process() {
    // Twelve files of three records (34 bytes each) with `--shards 2`: eight `migstat shard`
    // processes, two at a time, each of one or two consecutive files (by hand: 12 equal files
    // cut into 8 runs of about 1.5 files: 0..2, 2..3, 3..5, …), the second record of file 10
    // repeating file 2's. The release is the one pass's; then file 2 (the second of the first
    // process's run) fails and is named.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let write = |bad: Option<usize>| {
        for f in 1..=12usize {
            let id = |r: usize| match (f, r) {
                (10, 2) => "f02r2".to_string(),
                _ => format!("f{f:02}r{r}"),
            };
            let header = if Some(f) == bad {
                "id,age,age"
            } else {
                "id,age"
            };
            let body: String = (1..=3).map(|r| format!("{},{}\n", id(r), 20 + r)).collect();
            std::fs::write(
                d.join(format!("data_{f:02}.csv")),
                format!("{header}\n{body}"),
            )
            .unwrap();
        }
    };
    write(None);
    let spec = people_spec(d);
    let one = run(&spec, &d.join("out-one"), &[], &[]);
    assert_eq!(
        one.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let out = d.join("out-sharded");
    let sharded = migstat(
        &[
            "-v",
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--shards",
            "2",
        ],
        &[],
    );
    let log = String::from_utf8_lossy(&sharded.stderr);
    assert!(log.contains("files=12 processes=8 at_once=2"), "{log}");
    assert_eq!(sharded.status.code(), Some(0), "{log}");
    let (m1, m2) = (
        crate::manifest(&d.join("out-one")),
        crate::manifest(&d.join("out-sharded")),
    );
    let files = all_but_quarantine;
    assert_eq!(files(&m1), files(&m2));
    // 36 records, one a duplicate: 35 accepted in 12 parts, file 10's holding two.
    assert_eq!(
        (m2.sources[0].rows_accepted, m2.sources[0].rows_quarantined),
        (35, 1)
    );
    let parts = crate::read_accepted_parts(&d.join("out-sharded/current"), "people");
    assert_eq!(parts.len(), 12);
    assert_eq!(crate::read_parquet(&parts[9]).height(), 2);
    assert!(log.contains("duplicates_across_files=1"), "{log}");

    write(Some(2));
    let failed = run(&spec, &d.join("out-failed"), &[], &["--shards", "2"]);
    let e = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(65), "{e}");
    assert!(
        e.contains("the shard of file 1 (data_02.csv) of source `people` failed")
            && e.contains("column `age` appears twice"),
        "{e}"
    );
    let stray: Vec<String> = walk(&d.join("out-failed"))
        .into_iter()
        .filter(|p| p.contains(".shards"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
