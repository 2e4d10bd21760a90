//! What a release offers its users besides the Parquet tables: SDMX-CSV with its structures, the
//! codebook and data package, the HTML report. Each is read by a tool our users have (sdmx1,
//! frictionless, headless Chromium), not by migstat.

use crate::Counts;
use std::process::Command;

use polars::prelude::*;

#[test]
fn sdmx_exports_read_with_a_third_party_sdmx_reader() {
    let (_, release, _) = crate::shared_default_run();
    crate::python_check("sdmx_check.py", release, "sdmx ok");
}

#[test]
fn the_codebook_validates_with_frictionless_and_names_the_code_lists_labels() {
    let (_, release, _) = crate::shared_default_run();
    crate::python_check("codebook_check.py", release, "codebook ok");
}

#[test]
fn accepted_records_read_as_text_codes_in_every_reader() {
    // Derived code columns are written from their codes' indices (an Enum in migstat) and
    // declared as text: pyarrow, polars, pandas and DuckDB read strings, and the values are
    // the code lists' (age bands and regions recomputed by the script).
    let (_, release, _) = crate::shared_default_run();
    crate::python_check("accepted_check.py", release, "accepted ok");
}

#[test]
fn published_counts_subtract_to_negative_numbers_in_every_reader() {
    // Unsigned counts made 795 − 840 an overflow in DuckDB and 18446744073709551571 in polars
    // and pandas: every integer column of a release is signed.
    let (_, release, _) = crate::shared_default_run();
    crate::python_check("readers_check.py", release, "readers check:");
}

/// Chromium from Debian (`chromium`); `.ci/run` installs it. Outside CI a machine without it
/// skips the browser part with a message.
fn chromium() -> Option<String> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c.to_string());
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install chromium (apt-get install chromium) for the report test"
    );
    None
}

#[test]
fn the_report_loads_in_headless_chromium_with_every_pyramid_drawn() {
    let (_, release, plan) = crate::shared_default_run();
    let tmp = tempfile::tempdir().expect("temp dir");
    let page = release.join("report").join("index.html");
    let html = std::fs::read_to_string(&page).expect("report/index.html exists");

    // Every public table with sex and age bands has its pyramid of the whole population.
    let mut expected = 0;
    for t in &plan.tables {
        let public = release.join("public").join("tables").join(&t.id);
        if public.is_dir()
            && t.dimensions.iter().any(|d| d == "SEX")
            && t.dimensions.iter().any(|d| d == "AGE_GROUP")
        {
            let title = t.title.clone().unwrap_or_else(|| t.id.clone());
            assert!(
                html.contains(&format!("<figcaption>{title}: all</figcaption>")),
                "no pyramid for {}",
                t.id
            );
            expected += 1;
        }
    }
    assert!(expected >= 4, "the default pipeline has pyramids to draw");
    let pyramids = html.matches("<svg class=\"pyramid\"").count();
    assert!(pyramids >= expected);

    // Suppressed cells are drawn as such, never as values: asylum's pyramid has one marker per
    // suppressed (sex, age band) cell of the public file.
    let f = std::fs::File::open(release.join("public/tables/asylum/2024/data.parquet")).unwrap();
    let df = ParquetReader::new(f).finish().unwrap();
    let col = |n: &str| df.column(n).unwrap().str().unwrap().clone();
    let (sex, age, status, region, cit) = (
        col("SEX"),
        col("AGE_GROUP"),
        col("STATUS"),
        col("CITIZENSHIP_REGION"),
        col("CITIZENSHIP"),
    );
    let value = df.column("value").unwrap().counts().clone();
    let mut suppressed = 0;
    for i in 0..df.height() {
        let all_t = [&status, &region, &cit]
            .iter()
            .all(|c| c.get(i) == Some("_T"));
        let s = sex.get(i).unwrap();
        let a = age.get(i).unwrap();
        if all_t && (s == "M" || s == "F") && a != "_T" && a != "_U" && value.get(i).is_none() {
            suppressed += 1;
        }
    }
    let asylum_title = plan
        .tables
        .iter()
        .find(|t| t.id == "asylum")
        .and_then(|t| t.title.clone())
        .unwrap();
    let fig_end = html
        .find(&format!("<figcaption>{asylum_title}: all</figcaption>"))
        .unwrap();
    let fig_start = html[..fig_end].rfind("<figure>").unwrap();
    let markers = html[fig_start..fig_end]
        .matches("class=\"bar suppressed\"")
        .count();
    assert_eq!(
        markers, suppressed,
        "suppressed cells of the asylum pyramid"
    );

    let Some(browser) = chromium() else {
        eprintln!("chromium not found: the browser check is skipped (apt-get install chromium)");
        return;
    };
    // Each language's page, rendered: every pyramid drawn, no script error, nothing on the
    // console, and the title laid out in the language's direction (Arabic from the right).
    let pages = [
        ("index.html", "en", "ltr", "left"),
        ("index.fr.html", "fr", "ltr", "left"),
        ("index.ar.html", "ar", "rtl", "right"),
    ];
    let mut shots = Vec::new();
    for (file, lang, dir, align) in pages {
        let page = release.join("report").join(file);
        let html = std::fs::read_to_string(&page).expect("every language's page exists");
        assert!(
            html.contains(&format!("<html lang=\"{lang}\" dir=\"{dir}\">")),
            "{file}"
        );
        let pyramids = html.matches("<svg class=\"pyramid\"").count();
        assert!(pyramids >= expected, "{file}: {pyramids} pyramids");
        let run = |mode: &str, extra: &[String]| {
            let profile = tmp.path().join(format!("chromium-{lang}-{mode}"));
            let o = Command::new(&browser)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    "--enable-logging=stderr",
                    "--v=0",
                    "--window-size=1100,900",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args(extra)
                .arg(format!("file://{}", page.display()))
                .output()
                .expect("chromium runs");
            assert!(
                o.status.success(),
                "chromium failed on {file}:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            o
        };
        let o = run("dom", &["--dump-dom".to_string()]);
        let dom = String::from_utf8_lossy(&o.stdout);
        let log = String::from_utf8_lossy(&o.stderr);
        // The page's own check ran: every pyramid has bars, no script error.
        let body = dom.find("<body").map(|i| &dom[i..]).unwrap_or_default();
        let body = &body[..body.find('>').unwrap_or(0)];
        for want in [
            format!("data-pyramids=\"{pyramids}\""),
            format!("data-drawn=\"{pyramids}\""),
            "data-errors=\"0\"".to_string(),
            format!("data-dir=\"{dir}\""),
            format!("data-title-align=\"{align}\""),
        ] {
            assert!(body.contains(&want), "{file}: no {want} in {body}");
        }
        // Nothing on the console: no error, no blocked fetch (the page's policy forbids any).
        let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
        assert!(
            console.is_empty(),
            "{file}: console messages:\n{}",
            console.join("\n")
        );
        // A screenshot as docs/report-<lang>.png is made (`tools/screenshots.sh`): not blank,
        // and each language's differs.
        let shot = tmp.path().join(format!("report-{lang}.png"));
        run("shot", &[format!("--screenshot={}", shot.display())]);
        let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{file}: {} bytes",
            png.len()
        );
        shots.push(png);
    }
    assert!(shots[0] != shots[1] && shots[1] != shots[2] && shots[0] != shots[2]);
    // The committed screenshots exist, one per language.
    for lang in ["en", "fr", "ar"] {
        let p = crate::repo()
            .join("docs")
            .join(format!("report-{lang}.png"));
        assert!(
            p.is_file(),
            "{} is committed (tools/screenshots.sh)",
            p.display()
        );
    }
}

/// The report's numbers as each locale writes them and its labels in each language, checked
/// against Babel's CLDR data (`tests/report_check.py`).
#[test]
fn the_report_writes_numbers_and_labels_in_each_language() {
    let (_, release, _) = crate::shared_default_run();
    crate::python_check("report_check.py", release, "report check:");
}

/// The README's query gives the same rows in `migstat query` and in DuckDB (the README's DuckDB
/// form of it, on the same release); `describe` and the output formats work; a bad query is a
/// usage error that lists the tables.
#[test]
fn migstat_query_answers_like_duckdb() {
    let (_, release, _) = crate::shared_default_run();
    let readme = std::fs::read_to_string(crate::repo().join("README.md")).unwrap();
    let sql = "SELECT ref_year, SEX, value FROM first_permits WHERE AGE_GROUP = '_T' AND PERMIT_TYPE = '_T' AND ref_year >= 2022 ORDER BY ref_year, SEX";
    assert!(
        readme.contains(&format!("migstat query \"{sql}\"")),
        "the README shows this query"
    );
    assert!(
        readme.contains(&format!("{sql};")),
        "the README shows it for DuckDB"
    );
    let rel = release.to_str().unwrap();

    let ours = crate::migstat(&["query", "--release", rel, "--format", "csv", sql], &[]);
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let ours: Vec<String> = String::from_utf8_lossy(&ours.stdout)
        .lines()
        .map(String::from)
        .collect();

    let script = format!(
        "import duckdb\ncon = duckdb.connect()\ncon.execute(\"\"\"CREATE VIEW first_permits AS SELECT * FROM read_parquet('{rel}/public/tables/first_permits/*/*.parquet', hive_partitioning = true)\"\"\")\nprint('ref_year,SEX,value')\nfor r in con.execute(\"\"\"{sql}\"\"\").fetchall():\n    print(','.join('' if v is None else str(v) for v in r))\n"
    );
    let duck = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 runs");
    assert!(
        duck.status.success(),
        "{}",
        String::from_utf8_lossy(&duck.stderr)
    );
    let theirs: Vec<String> = String::from_utf8_lossy(&duck.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ours, theirs);
    assert!(ours.len() > 4, "{ours:?}");

    // Aligned table and JSON lines: the same numbers.
    let table = crate::migstat(&["query", "--release", rel, sql], &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("({} rows)", ours.len() - 1)),
        "{text}"
    );
    let json = crate::migstat(&["query", "--release", rel, "--format", "json", sql], &[]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (j, csv) in lines.iter().zip(ours.iter().skip(1)) {
        let v = csv.rsplit(',').next().unwrap();
        assert_eq!(j["value"].to_string(), v);
    }

    // Restricted files are not tables; errors name what is there.
    let bad = crate::migstat(&["query", "--release", rel, "SELECT * FROM permits"], &[]);
    assert_eq!(
        bad.status.code(),
        Some(64),
        "a usage error (EX_USAGE), not the spec's 78"
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("first_permits"));
    let typo = crate::migstat(&["query", "--release", rel, "SELEC 1"], &[]);
    assert_eq!(typo.status.code(), Some(64), "an SQL typo is a usage error");

    // `history` on a directory that does not exist says so (cron would read "no runs").
    let missing = crate::migstat(&["history", "/nonexistent/migstat-out"], &[]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("is not an output directory"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    let d = crate::migstat(&["describe", "--release", rel, "first_permits"], &[]);
    let d = String::from_utf8_lossy(&d.stdout);
    assert!(
        d.contains("AGE_GROUP") && d.contains("Femme") && d.contains("أنثى"),
        "{d}"
    );
}

#[test]
fn the_manifest_and_the_history_follow_their_json_schemas() {
    let (out, _, _) = crate::shared_default_run();
    for (name, id) in [
        ("manifest", migstat::manifest::MANIFEST_SCHEMA),
        ("history", migstat::manifest::HISTORY_SCHEMA),
    ] {
        let path = crate::repo().join(format!("schemas/run/{name}.schema.json"));
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("schema exists"))
                .expect("schema is JSON");
        assert_eq!(
            schema["$id"], id,
            "{name}: the schema's $id is the version the code names"
        );
    }
    crate::python_check("json_schema_check.py", out, "json schemas ok");
}

/// Every example of the README runs on a fresh release (`tests/readme_check.py`): its shell
/// commands, DuckDB SQL and Python (polars, pandas), the cron line and the systemd unit's
/// command (their JSON log parsed line by line), and its TOML parses.
#[test]
fn every_readme_example_runs_on_a_fresh_release() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let o = Command::new("python3")
        .arg(crate::repo().join("tests/readme_check.py"))
        .arg(env!("CARGO_BIN_EXE_migstat"))
        .arg(tmp.path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains("readme check:"),
        "README examples failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Every kind of example was found and run.
    let mut kinds = vec!["sh", "sql", "python", "cron", "ini", "toml"];
    // The cluster example (a scheduler and two executors) needs the Ballista engine.
    if cfg!(feature = "distributed") {
        kinds.push("bash");
    }
    for kind in kinds {
        assert!(
            stdout.contains(&format!(" {kind}")),
            "no {kind} example ran: {stdout}"
        );
    }
}

/// `migstat trace` on published cells of every count table of the default release (the grand
/// total, a one-code margin, the fullest cell with contributors; a record table, person tables,
/// stocks, first permits, migrations; suppressed, rounded, perturbed): the restricted trace
/// counts as many records as the restricted table's true value, read here from the file; the
/// public trace names the source, the rules and the protection and carries no delivery path,
/// hash or true value.
#[test]
fn migstat_trace_lists_a_cell_s_sources_rules_protection_and_records() {
    let (_, release, plan) = crate::shared_default_run();
    let mut traced = 0;
    // Survey estimates too (their records are the respondents, the restricted `n`), but a
    // contrast, whose `n` is the smallest of its terms'.
    for t in plan
        .tables
        .iter()
        .filter(|t| !matches!(t.kind, migstat::spec::TableKind::SurveyContrast { .. }))
    {
        let public = release.join("public/tables").join(&t.id);
        if !public.is_dir() {
            continue;
        }
        let p = t.periods.list.last().unwrap();
        let truth = {
            let f = std::fs::File::open(
                release
                    .join("restricted/tables")
                    .join(&t.id)
                    .join(p.partition())
                    .join("data.parquet"),
            )
            .unwrap();
            ParquetReader::new(f).finish().unwrap()
        };
        let n = truth.column("n").unwrap().counts().clone();
        let dims: Vec<&StringChunked> = t
            .dimensions
            .iter()
            .map(|d| truth.column(d).unwrap().str().unwrap())
            .collect();
        let totals = |i: usize| dims.iter().filter(|c| c.get(i) == Some("_T")).count();
        // The grand total, a margin by one code, the cell with the most codes and a count.
        let grand = (0..truth.height()).find(|&i| totals(i) == dims.len());
        let one =
            (0..truth.height()).find(|&i| totals(i) + 1 == dims.len() && n.get(i).unwrap_or(0) > 0);
        let fullest = (0..truth.height())
            .filter(|&i| n.get(i).unwrap_or(0) > 0)
            .min_by_key(|&i| totals(i));
        for i in [grand, one, fullest].into_iter().flatten() {
            let codes: Vec<(String, String)> = t
                .dimensions
                .iter()
                .zip(&dims)
                .filter(|(_, c)| c.get(i) != Some("_T"))
                .map(|(d, c)| (d.clone(), c.get(i).unwrap().to_string()))
                .collect();
            let tr = migstat::trace::trace(plan, release, &t.id, &codes, None, true, 10)
                .unwrap_or_else(|e| panic!("{} {codes:?}: {e}", t.id));
            let r = tr.restricted.as_ref().unwrap();
            let want = n.get(i).unwrap();
            assert_eq!(r.true_value, Some(want), "{} {codes:?}", t.id);
            assert_eq!(r.records, want, "{} {codes:?}: records counted", t.id);
            assert_eq!(r.record_keys.len() as u64, want.min(10));
            assert!(!r.deliveries.is_empty() && r.deliveries[0].blake3.len() == 64);
            assert_eq!(tr.source.id, t.source);
            assert_eq!(tr.rules.len(), t.dimensions.len());
            traced += 1;
        }
    }
    assert!(traced >= 40, "{traced} cells traced");
    // A spec whose glob matches a delivery more than the release holds (a file added since):
    // the trace reads the release's parts, as many as its manifest's deliveries.
    let mut grown = plan.clone();
    let permits = grown
        .sources
        .iter_mut()
        .find(|s| s.id == "permits")
        .unwrap();
    permits.files.push("a_file_delivered_later.csv".into());
    let codes = [("SEX".to_string(), "F".to_string())];
    let before = migstat::trace::trace(plan, release, "permit_stock", &codes, None, true, 10);
    let after = migstat::trace::trace(&grown, release, "permit_stock", &codes, None, true, 10);
    let records = |t: &migstat::trace::Trace| t.restricted.as_ref().unwrap().records;
    assert_eq!(records(&after.unwrap()), records(&before.unwrap()));

    // The CLI: public by default (nothing of the restricted tier), restricted on request.
    let rel = release.to_str().unwrap();
    let o = crate::migstat(&["trace", rel, "permit_stock", "SEX=F"], &[]);
    let public = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "source    permits",
        "SEX = F",
        "crosswalk rows mapping to F",
        "protection ",
    ] {
        assert!(public.contains(want), "no {want:?} in\n{public}");
    }
    for secret in ["blake3", "sample_data", "true value", "records"] {
        assert!(
            !public.contains(secret),
            "{secret:?} in the public trace\n{public}"
        );
    }
    let o = crate::migstat(
        &[
            "trace",
            rel,
            "permit_stock",
            "SEX=F",
            "--restricted",
            "--format",
            "json",
        ],
        &[],
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        j["restricted"]["records"], j["restricted"]["true_value"],
        "{j}"
    );
    // Mistakes are usage errors naming what exists.
    for (args, says) in [
        (
            vec!["trace", rel, "permit_stock", "COLOUR=F"],
            "no dimension",
        ),
        (vec!["trace", rel, "permit_stock", "SEX"], "DIM=CODE"),
        (vec!["trace", rel, "permit_stock", "SEX=Z"], "no cell"),
        (vec!["trace", rel, "nope"], "no table"),
        (
            vec!["trace", rel, "asylum", "--period", "1999"],
            "no period",
        ),
    ] {
        let o = crate::migstat(&args, &[]);
        assert_eq!(o.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Reference metadata (Eurostat SIMS 2.0) per public table: the spec's text where it gives one,
/// the rest derived from the release, the same in sims.json, the SDMX metadata set (checked
/// in `sdmx_check.py`) and the codebook.
#[test]
fn every_public_table_has_its_sims_reference_metadata() {
    let (_, release, plan) = crate::shared_default_run();
    let sims: serde_json::Value = serde_json::from_slice(
        &std::fs::read(release.join("public/metadata/sims.json")).expect("sims.json"),
    )
    .unwrap();
    let tables = sims["tables"].as_array().unwrap();
    let public: Vec<&migstat::spec::TableSpec> = plan
        .tables
        .iter()
        .filter(|t| release.join("public/tables").join(&t.id).is_dir())
        .collect();
    assert_eq!(tables.len(), public.len());
    let concept = |table: &str, id: &str| -> (String, String) {
        let t = tables.iter().find(|t| t["table"] == table).unwrap();
        let c = t["concepts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{table}: no {id}"));
        (
            c["text"].as_str().unwrap().to_string(),
            c["from"].as_str().unwrap().to_string(),
        )
    };
    for t in &public {
        // What the spec says wins, marked as such.
        if let Some(pop) = t.metadata.get("statistical_population") {
            assert_eq!(concept(&t.id, "STAT_POP"), (pop.clone(), "spec".into()));
        }
        assert_eq!(
            concept(&t.id, "INST_MANDATE"),
            (
                plan.metadata["institutional_mandate"].clone(),
                "spec".into()
            )
        );
        // Derived from the release.
        assert_eq!(concept(&t.id, "REF_AREA").0, "MA (Morocco)");
        let (sampling, from) = concept(&t.id, "SAMPLING_ERR");
        assert_eq!(from, "derived");
        assert_eq!(
            sampling.starts_with("design-based"),
            t.kind.is_survey(),
            "{}: {sampling}",
            t.id
        );
        assert!(concept(&t.id, "CONF_DATA_TR").0.len() > 20);
    }
    assert!(
        concept("permit_stock", "REF_PERIOD")
            .0
            .contains("a stock on the last day")
    );
    assert!(
        concept("asylum", "ACCURACY_OVERALL")
            .0
            .contains("1483 of 1500 delivered rows")
    );
    // The codebook's last section shows each report.
    let md = std::fs::read_to_string(release.join("public/codebook.md")).unwrap();
    let section = &md[md
        .find("\n## Reference metadata (SIMS 2.0)\n")
        .expect("SIMS section")..];
    for t in &public {
        assert!(
            section.contains(&format!("\n### {}\n\n| SIMS | concept | text |", t.id)),
            "{}",
            t.id
        );
    }
}

/// The French and Arabic codebooks describe each table's source in their language (the spec's
/// `description_fr` / `description_ar`), head their code tables and name the SIMS concepts in it.
#[test]
fn each_codebook_describes_sources_in_its_own_language() {
    use migstat::vocab::Lang;
    let (_, release, plan) = crate::shared_default_run();
    for (lang, file, code, sims) in [
        (
            Lang::Fr,
            "codebook.fr.md",
            "| code | Français |",
            "| S.3.6 | Population statistique (`STAT_POP`) |",
        ),
        (
            Lang::Ar,
            "codebook.ar.md",
            "| الرمز | العربية |",
            "| S.3.6 | المجتمع الإحصائي (`STAT_POP`) |",
        ),
    ] {
        let md = std::fs::read_to_string(release.join("public").join(file)).unwrap();
        assert!(md.contains(code), "{file}: no code table headed {code:?}");
        // The reference metadata's concepts are named in the page's language.
        assert!(md.contains(sims), "{file}: no SIMS row {sims:?}");
        let mut described = 0;
        for s in plan.sources.iter().filter(|s| s.description.is_some()) {
            let own = &s.description_translations[&lang];
            if md.contains(&format!("`{}`", s.id)) {
                assert!(
                    md.contains(&format!("`{}` — {own}", s.id)),
                    "{file}: {}",
                    s.id
                );
                // Outside the SIMS section, whose texts are English (as the page says).
                let body = &md[..md.find("SIMS 2.0").unwrap_or(md.len())];
                assert!(
                    !body.contains(s.description.as_deref().unwrap()),
                    "{file}: {} described in English",
                    s.id
                );
                described += 1;
            }
        }
        assert!(described >= 5, "{file}: {described} sources described");
    }
}
