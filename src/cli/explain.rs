//! `migstat explain`: what a run of a plan will do, for people.
//!
//! Input: a compiled [`Plan`]. Output: text.

use chrono::NaiveDate;
use migstat::spec::{Derivation, Encoding, Plan, schema};

/// A human-readable account of what a run of `plan` will do (`migstat explain`).
pub fn explain(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pipeline   {} (spec {})",
        plan.pipeline_id,
        plan.spec_path.display()
    );
    if let Some(t) = &plan.title {
        let _ = writeln!(s, "title      {t}");
    }
    let _ = writeln!(s, "spec hash  {}", plan.spec_hash);
    let _ = writeln!(
        s,
        "reference  date {}, period {} .. {}",
        plan.reference_date, plan.reference_period.start, plan.reference_period.end
    );
    let _ = writeln!(s, "chunks     {} rows", plan.chunk_rows);
    for src in &plan.sources {
        let _ = writeln!(
            s,
            "\nsource {}{}",
            src.id,
            src.description
                .as_deref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "  read     {:?}, {}, delimiter {:?}; reject the run above {:.2}% invalid rows",
            src.format,
            match src.encoding {
                Encoding::Utf8 => "utf-8",
                Encoding::Windows1252 => "windows-1252",
            },
            src.delimiter as char,
            src.max_invalid_fraction * 100.0
        );
        for f in &src.files {
            let _ = writeln!(s, "  file     {}", f.display());
        }
        let _ = writeln!(s, "  schema   {}", src.schema_path.display());
        if !src.schema.primary_key.is_empty() {
            let _ = writeln!(s, "  key      {}", src.schema.primary_key.join(", "));
        }
        for f in &src.schema.fields {
            let _ = writeln!(
                s,
                "    {:<22} {:<8} {}",
                f.name,
                f.field_type.name(),
                describe_checks(f)
            );
        }
        if src.format == migstat::spec::Format::Excel {
            let _ = writeln!(
                s,
                "  sheet    {}, header on row {}",
                src.sheet.as_deref().unwrap_or("(the first)"),
                src.header_row
            );
        }
        if let Some(d) = &src.design {
            let parts: Vec<String> = [
                ("strata", &d.strata),
                ("psu", &d.psu),
                ("ssu", &d.ssu),
                ("fpc", &d.fpc),
                ("fpc_ssu", &d.fpc_ssu),
            ]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
            .collect();
            let _ = writeln!(
                s,
                "  design   weight {}{}{}",
                d.weight.as_deref().unwrap_or("from the FPCs"),
                parts.iter().map(|p| format!(", {p}")).collect::<String>(),
                d.replicates
                    .as_ref()
                    .map(|r| format!(", {} replicate weights ({:?})", r.columns.len(), r.kind))
                    .unwrap_or_default()
            );
            if let Some(c) = &d.calibration {
                let margins: Vec<String> = c
                    .margins
                    .iter()
                    .map(|m| format!("{} ({} totals)", m.by.join(" × "), m.totals.len()))
                    .collect();
                let _ = writeln!(
                    s,
                    "  calibrated by {} to {}{}{}",
                    c.method.name(),
                    margins.join(", "),
                    c.bounds
                        .map(|(l, h)| format!(", g within [{l}, {h}]"))
                        .unwrap_or_default(),
                    c.trim
                        .map(|(l, h)| format!(", g trimmed to [{l}, {h}]"))
                        .unwrap_or_default()
                );
            }
        }
        if let Some(e) = src.declared_encoding {
            let _ = writeln!(s, "  encoding {e:?} (declared; overrides the file's own)");
        }
        if src.dialect != migstat::spec::Dialect::default() {
            let _ = writeln!(s, "  dialect  {:?}", src.dialect);
        }
        for c in &src.checks {
            let _ = writeln!(
                s,
                "  check    {} {} {} (else quarantined: {})",
                c.field,
                match c.rule {
                    migstat::spec::CheckRule::NotAfter => "not after",
                    migstat::spec::CheckRule::NotBefore => "not before",
                },
                match &c.against {
                    migstat::spec::Against::ReferenceDate => plan.reference_date.to_string(),
                    migstat::spec::Against::Field(f) => f.clone(),
                },
                match c.rule {
                    migstat::spec::CheckRule::NotAfter => "not_after",
                    migstat::spec::CheckRule::NotBefore => "not_before",
                }
            );
        }
        if !src.harmonize.is_empty() {
            let _ = writeln!(s, "  derives");
        }
        for d in &src.harmonize {
            let how = match &d.derivation {
                Derivation::Code {
                    from,
                    crosswalk,
                    codelist,
                    unmapped,
                    value_labels,
                    ..
                } => format!(
                    "code from {from}{}{}{}; unmapped: {}",
                    if *value_labels {
                        " through its file's value labels"
                    } else {
                        ""
                    },
                    if crosswalk.is_empty() {
                        String::new()
                    } else {
                        format!(" via {} crosswalk file(s)", crosswalk.len())
                    },
                    codelist
                        .as_ref()
                        .map(|c| format!(", code list {c}"))
                        .unwrap_or_default(),
                    match unmapped {
                        migstat::spec::Unmapped::Quarantine => "quarantine".to_string(),
                        migstat::spec::Unmapped::Code(c) => format!("→ {c}"),
                        migstat::spec::Unmapped::Observed => "kept as the code".to_string(),
                    }
                ),
                Derivation::Age {
                    birth_date,
                    birth_year,
                    age,
                    at,
                    range: [lo, hi],
                } => format!(
                    "age at {} from {}; plausible {lo}–{hi} (else quarantined: age_range)",
                    at.as_ref().map_or_else(
                        || plan.reference_date.to_string(),
                        |a| format!("`{a}` (stocks: the stock date)")
                    ),
                    [birth_date.as_deref(), birth_year.as_deref(), age.as_deref()]
                        .iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", else ")
                ),
                Derivation::Band { age, banding } => format!("{} banding of {age}", banding.id),
                Derivation::Status { history, at, .. } => format!(
                    "status at {} from {}",
                    at.as_ref().map_or_else(
                        || plan.reference_date.to_string(),
                        |a| format!("`{a}` (stocks: the stock date)")
                    ),
                    history
                        .iter()
                        .map(|(c, f)| format!("{c} ({f})"))
                        .collect::<Vec<_>>()
                        .join(" → ")
                ),
                Derivation::Lookup {
                    from,
                    codelist,
                    column,
                    national,
                } => match national {
                    None => format!("{column} of {from} in {codelist}"),
                    Some(n) => format!("{column} of {from} in {codelist}, {n} as NAT"),
                },
                Derivation::Foreign { from, national } => {
                    format!("NAT ({from} = {national}) or FOR")
                }
                Derivation::Month { date } => format!("month of {date}"),
                Derivation::Year { date } => format!("year of {date}"),
            };
            let _ = writeln!(s, "    {:<22} {how}", d.name);
        }
    }
    for t in &plan.tables {
        let _ = writeln!(
            s,
            "\ntable {} — {} from {}, {:?}, by {}",
            t.id,
            serde_json::to_value(t.unit)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            t.source,
            t.kind,
            t.dimensions.join(" × ")
        );
    }
    s
}

fn describe_checks(f: &schema::Field) -> String {
    let c = &f.constraints;
    let mut parts = Vec::new();
    if let schema::FieldType::Date(df) = &f.field_type {
        parts.push(format!("format {}", df.patterns()));
        if df.time != schema::TimeOfDay::None {
            parts.push(format!("time of day: {}", df.time.name()));
        }
    }
    if c.required {
        parts.push("required".to_string());
    }
    if c.unique {
        parts.push("unique".to_string());
    }
    let bound = |b: &schema::Bound| match b {
        schema::Bound::Int(i) => i.to_string(),
        schema::Bound::Float(x) => x.to_string(),
        schema::Bound::Date(d) => (NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
            + chrono::Duration::days(i64::from(*d)))
        .to_string(),
    };
    if let Some(b) = &c.minimum {
        parts.push(format!("≥ {}", bound(b)));
    }
    if let Some(b) = &c.maximum {
        parts.push(format!("≤ {}", bound(b)));
    }
    if let Some(p) = &c.pattern {
        parts.push(format!("pattern {}", p.as_str()));
    }
    match &c.enumeration {
        Some(schema::EnumValues::Strings(s)) => parts.push(format!(
            "one of {}",
            s.iter().cloned().collect::<Vec<_>>().join("|")
        )),
        Some(schema::EnumValues::Ints(s)) => parts.push(format!(
            "one of {}",
            s.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("|")
        )),
        None => {}
    }
    if let Some(n) = c.min_length {
        parts.push(format!("length ≥ {n}"));
    }
    if let Some(n) = c.max_length {
        parts.push(format!("length ≤ {n}"));
    }
    parts.join(", ")
}
