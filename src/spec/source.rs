//! The `[sources.<id>]` section: each delivery's files (globs), format, encoding, delimiter,
//! Table Schema, tolerance, identifiers, and its `harmonize` and `design` subsections.
//!
//! Input: the TOML tables and the files they name. Output: [`SourcePlan`]s with their schemas'
//! hashes, or a spec issue for every problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::schema::FieldType;

use super::*;

/// `[sources.<id>]`: every source compiled, with its schema's hash.
pub(super) fn sources_section(
    root: &Section<'_>,
    base: &Path,
    default_fraction: f64,
    (codelists, bandings): (&BTreeMap<String, CodeList>, &[Banding]),
    cx: &mut Ctx<'_>,
) -> (Vec<SourcePlan>, Vec<blake3::Hash>) {
    let mut sources = Vec::new();
    let mut schema_hashes = Vec::new();
    match root.get("sources") {
        Some(Value::Table(t)) if !t.is_empty() => {
            for (id, v) in t {
                let path = format!("sources.{id}");
                if !is_identifier(id) {
                    cx.push(&path, "source ids use letters, digits, `_` and `-` only");
                }
                let Value::Table(st) = v else {
                    cx.push(&path, "must be a table");
                    continue;
                };
                if let Some((s, h)) =
                    compile_source(id, st, base, default_fraction, (codelists, bandings), cx)
                {
                    sources.push(s);
                    schema_hashes.push(h);
                }
            }
        }
        _ => cx.push("sources", "required: at least one [sources.<id>] table"),
    }

    (sources, schema_hashes)
}

fn compile_source(
    id: &str,
    st: &Table,
    base: &Path,
    default_fraction: f64,
    (codelists, bandings): (&BTreeMap<String, CodeList>, &[crate::spec::Banding]),
    cx: &mut Ctx<'_>,
) -> Option<(SourcePlan, blake3::Hash)> {
    let p = format!("sources.{id}.");
    // A Frictionless Data Resource named by `resource` stands for the keys it gives.
    let resource = match st.get("resource") {
        None => None,
        Some(Value::String(r)) => from_resource(&clean_path(&base.join(r)), st, &p, cx),
        Some(_) => {
            cx.push(
                format!("{p}resource"),
                "must name a Data Resource descriptor (JSON)",
            );
            None
        }
    };
    let merged;
    let (st, inline_schema, descriptor_hash) = match resource {
        Some(r) => {
            merged = r.table;
            (&merged, r.inline_schema, Some(r.hash))
        }
        None => (st, None, None),
    };
    let st = &Section::new(st, format!("sources.{id}"));
    st.get("resource");

    let Layout {
        format,
        encoding,
        declared_encoding,
        delimiter,
        dialect,
        sheet,
        header_row,
    } = layout(st, cx);
    let max_invalid_fraction = cx
        .fraction(st, "max_invalid_fraction")
        .unwrap_or(default_fraction);
    let description = cx.str(st, "description", false).map(str::to_string);
    let description_translations = super::translations(st, "description", cx);

    let files = match cx.str(st, "path", true) {
        Some(pattern) => expand_files(pattern, base, &format!("{p}path"), cx),
        None => Vec::new(),
    };

    let schema_out = schema_of(st, inline_schema.as_ref(), base, cx);

    let field_ref = |key: &str, cx: &mut Ctx<'_>| -> Option<String> {
        let name = cx.str(st, key, false)?.to_string();
        if let Some((sp, s, _)) = &schema_out
            && s.field(&name).is_none()
        {
            cx.push(
                format!("{p}{key}"),
                format!("field `{name}` is not in schema {}", sp.display()),
            );
        }
        Some(name)
    };
    let person_id = field_ref("person_id", cx);
    let record_id = field_ref("record_id", cx);

    let harmonize = match st.sub("harmonize", "a table of derived columns", cx) {
        None => Vec::new(),
        Some(h) => derivation::compile_harmonize(
            &h,
            base,
            schema_out.as_ref().map(|(_, s, _)| s),
            codelists,
            bandings,
            cx,
        ),
    };
    if format.is_some_and(|f| !f.is_stat_package()) {
        for d in &harmonize {
            if let super::Derivation::Code {
                value_labels: true, ..
            } = d.derivation
            {
                cx.push(
                    format!("{p}harmonize.{}.value_labels", d.name),
                    "only SPSS and Stata files carry value labels (format = \"spss\" or \"stata\")",
                );
            }
        }
    }
    let design = st
        .sub("design", "{ weight = ..., strata = ..., psu = ... }", cx)
        .and_then(|d| {
            let derived: Vec<String> = harmonize.iter().map(|h| h.name.clone()).collect();
            design::parse(
                &d,
                schema_out.as_ref().map(|(_, s, _)| s),
                &derived,
                (base, record_id.as_deref()),
                cx,
            )
        });
    let checks = st
        .sub(
            "checks",
            "{ birth_date = { not_after = \"reference_date\" } }",
            cx,
        )
        .map(|c| checks(&c, schema_out.as_ref().map(|(_, s, _)| s), cx))
        .unwrap_or_default();
    // Read with each table that takes its source's period (and checked there).
    let period = st.get("period").cloned();
    st.finish(cx);
    let (schema_path, schema, mut hash) = schema_out?;
    if let Some(d) = descriptor_hash {
        // The descriptor changes results as much as the spec does (encoding, dialect, files).
        let mut h = blake3::Hasher::new();
        h.update(d.as_bytes());
        h.update(hash.as_bytes());
        hash = h.finalize();
    }
    Some((
        SourcePlan {
            id: id.to_string(),
            description,
            description_translations,
            files,
            format: format?,
            schema_path,
            schema,
            encoding: encoding?,
            declared_encoding,
            delimiter: delimiter?,
            dialect,
            sheet,
            header_row,
            max_invalid_fraction,
            person_id,
            record_id,
            harmonize,
            checks,
            design,
            period,
        },
        hash,
    ))
}

/// Why `path` cannot be read as a delivery file, if it cannot: not found, a directory, a
/// symbolic link that leads nowhere or in a loop, or something other than a file.
fn not_a_file(path: &Path) -> Option<String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(m) if m.is_dir() => Some(format!(
            "{shown} is a directory: name a file, or a glob such as {}",
            path.join("*.csv").display()
        )),
        Ok(_) => Some(format!(
            "{shown} is not a regular file (a device, a pipe or a socket?)"
        )),
        Err(e) => match std::fs::symlink_metadata(path) {
            Ok(l) if l.file_type().is_symlink() => Some(format!(
                "{shown} is a symbolic link that leads nowhere or in a loop ({e})"
            )),
            _ if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "file not found: {shown} (paths are relative to the spec file)"
            )),
            _ => Some(format!("cannot read {shown}: {e}")),
        },
    }
}

/// How a source's files are physically written: format, and for CSV its encoding, delimiter
/// and dialect, for Excel its sheet and header row. `None` where a value was reported.
struct Layout {
    format: Option<Format>,
    encoding: Option<Encoding>,
    declared_encoding: Option<Encoding>,
    delimiter: Option<u8>,
    dialect: Dialect,
    sheet: Option<String>,
    header_row: u32,
}

fn layout(st: &Section<'_>, cx: &mut Ctx<'_>) -> Layout {
    let p = format!("{}.", st.path());
    let format = match cx.str(st, "format", true) {
        Some("csv") => Some(Format::Csv),
        Some("parquet") => Some(Format::Parquet),
        Some("excel") => Some(Format::Excel),
        Some("spss") => Some(Format::Spss),
        Some("stata") => Some(Format::Stata),
        Some(other) => {
            cx.push(
                format!("{p}format"),
                format!("`{other}` is not a format (use csv, parquet, excel, spss or stata)"),
            );
            None
        }
        None => None,
    };
    let encoding = match cx.str(st, "encoding", false) {
        None => Some(Encoding::Utf8),
        Some(e) => match e.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "windows-1252" | "cp1252" => Some(Encoding::Windows1252),
            _ => {
                cx.push(
                    format!("{p}encoding"),
                    format!("`{e}` is not supported (use utf-8 or windows-1252)"),
                );
                None
            }
        },
    };
    // Not `cx.str`: a tab (`"\t"` in TOML) is whitespace, yet a delimiter.
    let delimiter = match st.get("delimiter").map(|v| v.as_str().ok_or(v)) {
        Some(Err(_)) => {
            cx.push(format!("{p}delimiter"), "must be a string");
            None
        }
        None => Some(b','),
        Some(Ok(d)) if d == "\\t" || d == "\t" => Some(b'\t'),
        Some(Ok(d)) if d.len() == 1 && d != "\"" && d != "\n" && d != "\r" => Some(d.as_bytes()[0]),
        Some(Ok(d)) => {
            cx.push(
                format!("{p}delimiter"),
                format!("`{d}` is not a single ASCII character usable as a delimiter"),
            );
            None
        }
    };
    let dialect = st
        .sub(
            "dialect",
            "{ line_terminator = \"\\r\", quote_char = \"'\" }",
            cx,
        )
        .map(|d| {
            let dialect = dialect(&d, delimiter, cx);
            d.finish(cx);
            dialect
        })
        .unwrap_or_default();
    if matches!(format, Some(Format::Parquet | Format::Excel)) {
        for k in ["encoding", "delimiter", "dialect"] {
            if st.has(k) {
                cx.push(format!("{p}{k}"), "only applies to csv sources");
            }
        }
    }
    // SPSS and Stata files declare their own encoding; `encoding` overrides it (an old Stata
    // file written in Windows-1252 says nothing).
    let mut declared_encoding = None;
    if let Some(f) = format.filter(|f| f.is_stat_package()) {
        for k in ["delimiter", "dialect"] {
            if st.has(k) {
                cx.push(format!("{p}{k}"), "only applies to csv sources");
            }
        }
        if st.has("encoding") {
            declared_encoding = encoding;
        }
        if !cfg!(feature = "readstat") {
            cx.push(
                format!("{p}format"),
                format!(
                    "this migstat was built without the `readstat` feature that reads {} files \
                     (install Debian's libreadstat-dev, then build with --features readstat)",
                    if f == Format::Spss { "SPSS" } else { "Stata" }
                ),
            );
        }
    }
    let (sheet, header_row) = if format == Some(Format::Excel) {
        let sheet = cx.str(st, "sheet", false).map(str::to_string);
        let header_row = match st.get("header_row") {
            None => 1,
            Some(v) => match v.as_integer().and_then(|i| u32::try_from(i).ok()) {
                Some(n) if n >= 1 => n,
                _ => {
                    cx.push(
                        format!("{p}header_row"),
                        "must be the sheet's row number of the header, 1 or more",
                    );
                    1
                }
            },
        };
        if !cfg!(feature = "excel") {
            cx.push(
                format!("{p}format"),
                "this migstat was built without the `excel` feature",
            );
        }
        (sheet, header_row)
    } else {
        (None, 1)
    };
    Layout {
        format,
        encoding,
        declared_encoding,
        delimiter,
        dialect,
        sheet,
        header_row,
    }
}

/// The source's Table Schema — inline in its Data Resource, or the file `schema` names — with
/// its path and hash; `None` after reporting why it cannot be read.
fn schema_of(
    st: &Section<'_>,
    inline_schema: Option<&(PathBuf, String)>,
    base: &Path,
    cx: &mut Ctx<'_>,
) -> Option<(PathBuf, TableSchema, blake3::Hash)> {
    let p = format!("{}.", st.path());
    let mut schema_out = None;
    if let Some((descriptor, text)) = inline_schema {
        match schema::parse(text, descriptor) {
            Ok(s) => schema_out = Some((descriptor.clone(), s, blake3::hash(text.as_bytes()))),
            Err(issues) => cx.issues.extend(issues),
        }
    } else if let Some(sp) = cx.str(st, "schema", true) {
        let schema_path = clean_path(&base.join(sp));
        match std::fs::read(&schema_path) {
            Err(e) => cx.push(
                format!("{p}schema"),
                format!(
                    "cannot read schema {}: {e} (paths are relative to the spec file)",
                    schema_path.display()
                ),
            ),
            Ok(bytes) => {
                let hash = blake3::hash(&bytes);
                match String::from_utf8(bytes)
                    .map_err(|_| {
                        vec![SpecIssue {
                            file: schema_path.clone(),
                            key: String::new(),
                            message: "schema is not UTF-8".into(),
                        }]
                    })
                    .and_then(|t| schema::parse(&t, &schema_path))
                {
                    Ok(s) => schema_out = Some((schema_path, s, hash)),
                    Err(issues) => cx.issues.extend(issues),
                }
            }
        }
    }

    schema_out
}

/// What a Data Resource descriptor gives a source: the source's table with the descriptor's
/// keys in it, its inline schema (descriptor path, JSON text) if any, and the descriptor's hash.
struct FromResource {
    table: Table,
    inline_schema: Option<(PathBuf, String)>,
    hash: blake3::Hash,
}

/// Read a [Frictionless Data Resource](https://datapackage.org/standard/data-resource/)
/// descriptor: `path` (a file or a list, relative to the descriptor), `format` (else the
/// path's extension: csv, tsv, parquet, xlsx, sav, dta…), `encoding`, `dialect` (`delimiter`, `lineTerminator`,
/// `quoteChar`, `doubleQuote`, `escapeChar`, `skipInitialSpace`, `commentChar`; `header` must
/// be true) and `schema` (a path or inline). Descriptive keys are accepted and unused; a key
/// the spec also gives, or one migstat cannot honour, is an issue.
fn from_resource(file: &Path, st: &Table, p: &str, cx: &mut Ctx<'_>) -> Option<FromResource> {
    use serde_json::Value as J;
    let key = format!("{p}resource");
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            cx.push(
                &key,
                format!(
                    "cannot read {}: {e} (paths are relative to the spec file)",
                    file.display()
                ),
            );
            return None;
        }
    };
    let json: serde_json::Map<String, J> = match serde_json::from_slice(&bytes) {
        Ok(J::Object(o)) => o,
        Ok(_) => {
            cx.push(&key, format!("{} is not a JSON object", file.display()));
            return None;
        }
        Err(e) => {
            cx.push(&key, format!("{} is not valid JSON: {e}", file.display()));
            return None;
        }
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let at = |p: &str| clean_path(&dir.join(p)).to_string_lossy().into_owned();
    let mut table = st.clone();
    let mut give = |k: &str, v: Value, cx: &mut Ctx<'_>| {
        if st.contains_key(k) {
            cx.push(
                format!("{p}{k}"),
                format!("given by the resource {} too: keep one", file.display()),
            );
        }
        table.insert(k.to_string(), v);
    };
    const DESCRIPTIVE: &[&str] = &[
        "$schema",
        "profile",
        "name",
        "title",
        "description",
        "homepage",
        "sources",
        "licenses",
        "mediatype",
        "bytes",
        "hash",
        "type",
        "keywords",
        "version",
        "created",
    ];
    let mut inline_schema = None;
    let mut path_text = String::new();
    for (k, v) in &json {
        match (k.as_str(), v) {
            ("path", J::String(s)) => {
                path_text = s.clone();
                give("path", Value::String(at(s)), cx);
            }
            ("path", J::Array(a)) if a.len() == 1 && a[0].is_string() => {
                path_text = a[0].as_str().unwrap_or_default().to_string();
                give("path", Value::String(at(&path_text)), cx);
            }
            ("format", J::String(f)) => give("format", Value::String(f.to_ascii_lowercase()), cx),
            ("encoding", J::String(e)) => give("encoding", Value::String(e.clone()), cx),
            ("schema", J::String(s)) => give("schema", Value::String(at(s)), cx),
            ("schema", J::Object(o)) => {
                if st.contains_key("schema") {
                    cx.push(format!("{p}schema"), format!("given by the resource {} too: keep one", file.display()));
                }
                inline_schema = Some((file.to_path_buf(), J::Object(o.clone()).to_string()));
            }
            ("dialect", J::Object(d)) => {
                let mut t = Table::new();
                for (dk, dv) in d {
                    let name = match dk.as_str() {
                        "delimiter" => {
                            if let J::String(s) = dv {
                                give("delimiter", Value::String(s.clone()), cx);
                            }
                            continue;
                        }
                        "header" if dv == &J::Bool(true) => continue,
                        "$schema" | "profile" | "title" | "description" | "name" => continue,
                        "lineTerminator" => "line_terminator",
                        "quoteChar" => "quote_char",
                        "doubleQuote" => "double_quote",
                        "escapeChar" => "escape_char",
                        "skipInitialSpace" => "skip_initial_space",
                        "commentChar" => "comment_char",
                        other => {
                            cx.push(
                                format!("{key}.dialect.{}", cap(other)),
                                "not supported (lineTerminator, quoteChar, doubleQuote, escapeChar, skipInitialSpace, commentChar, delimiter; header must be true)",
                            );
                            continue;
                        }
                    };
                    match dv {
                        J::String(s) => t.insert(name.into(), Value::String(s.clone())),
                        J::Bool(b) => t.insert(name.into(), Value::Boolean(*b)),
                        _ => t.insert(name.into(), Value::Integer(0)),
                    };
                }
                give("dialect", Value::Table(t), cx);
            }
            (k, _) if DESCRIPTIVE.contains(&k) => {}
            (k, _) => cx.push(
                format!("{key}.{}", cap(k)),
                "not supported in a resource migstat reads (path, format, encoding, dialect, schema, and descriptive keys)",
            ),
        }
    }
    if !json.contains_key("format") && !path_text.is_empty() {
        let ext = Path::new(&path_text)
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" | "parquet" => give("format", Value::String(ext), cx),
            "xlsx" | "xls" | "xlsb" | "ods" => give("format", Value::String("excel".into()), cx),
            "sav" | "zsav" | "por" => give("format", Value::String("spss".into()), cx),
            "dta" => give("format", Value::String("stata".into()), cx),
            "tsv" => {
                give("format", Value::String("csv".into()), cx);
                if json
                    .get("dialect")
                    .is_none_or(|d| d.get("delimiter").is_none())
                {
                    give("delimiter", Value::String("\t".into()), cx);
                }
            }
            _ => {}
        }
    }
    if json.get("format").and_then(J::as_str) == Some("tsv") {
        table.insert("format".into(), Value::String("csv".into()));
        if json
            .get("dialect")
            .is_none_or(|d| d.get("delimiter").is_none())
        {
            table.insert("delimiter".into(), Value::String("\t".into()));
        }
    }
    Some(FromResource {
        table,
        inline_schema,
        hash: blake3::hash(&bytes),
    })
}

/// `[sources.<id>.dialect]`: how the CSV is written beyond its delimiter, after Frictionless's
/// CSV Dialect: `line_terminator` (`"\n"`, `"\r\n"` — both the default — or `"\r"`),
/// `quote_char` (one character, or `""` for none), `double_quote`, `escape_char`,
/// `skip_initial_space`, `comment_char`.
fn dialect(d: &Section<'_>, delimiter: Option<u8>, cx: &mut Ctx<'_>) -> Dialect {
    let mut out = Dialect::default();
    let one_char = |key: &str, cx: &mut Ctx<'_>| -> Option<Option<u8>> {
        let v = d.get(key)?;
        match v.as_str() {
            Some("") => Some(None),
            Some(c)
                if c.len() == 1
                    && !["\n", "\r"].contains(&c)
                    && Some(c.as_bytes()[0]) != delimiter =>
            {
                Some(Some(c.as_bytes()[0]))
            }
            _ => {
                cx.push(
                    d.key(key),
                    "must be one ASCII character other than a line break or the delimiter",
                );
                None
            }
        }
    };
    let flag = |key: &str, cx: &mut Ctx<'_>| -> Option<bool> {
        let v = d.get(key)?;
        let b = v.as_bool();
        if b.is_none() {
            cx.push(d.key(key), "must be true or false");
        }
        b
    };
    match d.get("line_terminator").map(|v| v.as_str()) {
        None | Some(Some("\n")) | Some(Some("\r\n")) => {}
        Some(Some("\r")) => out.cr_only = true,
        Some(_) => cx.push(
            d.key("line_terminator"),
            "must be \"\\n\", \"\\r\\n\" (either is read by default) or \"\\r\"",
        ),
    }
    if let Some(q) = one_char("quote_char", cx) {
        out.quote = q;
    }
    if let Some(b) = flag("double_quote", cx) {
        out.double_quote = b;
    }
    if let Some(e) = one_char("escape_char", cx) {
        out.escape = e;
    }
    if let Some(b) = flag("skip_initial_space", cx) {
        out.skip_initial_space = b;
    }
    if let Some(c) = one_char("comment_char", cx) {
        out.comment = c;
    }
    if out.quote.is_some() && out.quote == out.escape {
        cx.push(
            d.key("escape_char"),
            "must differ from the quote character (a doubled quote is `double_quote`)",
        );
    }
    out
}

/// `[sources.<id>.checks]`: plausibility rules between a record's fields, or against the
/// reference date. `field = { not_after = "reference_date" | "<field>", not_before = ... }`;
/// both sides dates, or both years or integers.
fn checks(c: &Section<'_>, schema: Option<&TableSchema>, cx: &mut Ctx<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    let kind = |name: &str| -> Option<u8> {
        schema?.field(name).map(|f| match f.field_type {
            FieldType::Date(_) => 1,
            FieldType::Year | FieldType::Integer => 2,
            _ => 0,
        })
    };
    for (field, v) in c.names() {
        let Value::Table(t) = v else {
            cx.push(
                c.key(field),
                "must be a table, e.g. { not_after = \"reference_date\" }",
            );
            continue;
        };
        let t = Section::new(t, c.key(field));
        let mine = kind(field);
        if schema.is_some() && mine.is_none() {
            cx.push(
                t.path(),
                format!("`{}` is not a field of the source's schema", cap(field)),
            );
        } else if mine == Some(0) {
            cx.push(
                t.path(),
                format!(
                    "`{}` is neither a date nor a year or integer field",
                    cap(field)
                ),
            );
        }
        for (key, rule) in [
            ("not_after", CheckRule::NotAfter),
            ("not_before", CheckRule::NotBefore),
        ] {
            let Some(other) = cx.str(&t, key, false) else {
                continue;
            };
            let against = if other == "reference_date" {
                if kind(other).is_some() {
                    cx.push(t.key(key), "the schema has a field named `reference_date`: rename it, the name means the pipeline's reference date here");
                }
                Against::ReferenceDate
            } else {
                match kind(other) {
                    None if schema.is_some() => cx.push(
                        t.key(key),
                        format!("`{}` is neither `reference_date` nor a field of the source's schema", cap(other)),
                    ),
                    Some(k) if mine.is_some_and(|m| m != 0 && m != k) => cx.push(
                        t.key(key),
                        format!("`{}` and `{}` cannot be compared: both must be dates, or both years or integers", cap(field), cap(other)),
                    ),
                    _ => {}
                }
                Against::Field(other.to_string())
            };
            out.push(Check {
                field: field.clone(),
                rule,
                against,
            });
        }
        if !out.iter().any(|x| &x.field == field) {
            cx.push(
                t.path(),
                "say what the field may not pass: `not_after` or `not_before`",
            );
        }
        t.finish(cx);
    }
    out
}

fn expand_files(pattern: &str, base: &Path, key: &str, cx: &mut Ctx<'_>) -> Vec<PathBuf> {
    let full = clean_path(&base.join(pattern));
    let Some(full_str) = full.to_str() else {
        cx.push(key, "path is not valid UTF-8");
        return Vec::new();
    };
    let is_glob = pattern.contains(['*', '?', '[']);
    if !is_glob {
        if let Some(why) = not_a_file(&full) {
            cx.push(key, why);
            return Vec::new();
        }
        return vec![full];
    }
    match glob::glob(full_str) {
        Err(e) => {
            cx.push(key, format!("invalid glob pattern: {e}"));
            Vec::new()
        }
        Ok(paths) => {
            // A match that is a directory is not a delivery; one that should be a file and
            // cannot be read (a broken or looping link) is reported, not skipped.
            let mut files: Vec<PathBuf> = Vec::new();
            for p in paths.filter_map(|p| p.ok()).filter(|p| !p.is_dir()) {
                match not_a_file(&p) {
                    None => files.push(p),
                    Some(why) => cx.push(key, why),
                }
            }
            files.sort();
            if files.is_empty() {
                cx.push(
                    key,
                    format!(
                        "no file matches {} (paths are relative to the spec file)",
                        full.display()
                    ),
                );
            }
            files
        }
    }
}
