//! SPSS (`.sav`, `.zsav`, `.por`) and Stata (`.dta`, every version) files, read through
//! ReadStat — the C library pyreadstat and R's haven read them with (Debian's
//! `libreadstat-dev`; cargo feature `readstat`).
//!
//! Input: one file of a source whose `format` is `spss` or `stata`. Output: [`RawChunk`]s like
//! the other readers' — one text column per schema field, record numbers (the case number; no
//! line), cells that cannot be their field's type as issues — and the file's **value labels**
//! by field ([`ValueLabels`]), which a code derivation may map through (`value_labels = true`)
//! before its crosswalk.
//!
//! Cells as text: system-missing, Stata's extended missing values (`.a`…`.z`) and SPSS user-
//! missing values are null (as pyreadstat and haven read them by default); whole numbers as
//! integers; a variable with a date format (SPSS `DATE`, `ADATE`, `EDATE`, `SDATE`, `JDATE`,
//! `MOYR`, `QYR`, `WKYR`; Stata `%td`) as a date, one with a datetime format (SPSS `DATETIME`,
//! `YMDHMS`; Stata `%tc`, `%tC` without leap seconds) as a date under the field's `time` rule;
//! 0/1 in a boolean field as its first false/true value.
//!
//! ReadStat parses a file in one call and hands each value to a callback. The file is read
//! twice: once for its dictionary (variables, formats, value labels — Stata stores its labels
//! after the data), then for the data on a thread of its own that hands out chunks through a
//! bounded channel, so memory holds at most two chunks whatever the file's size. The bytes are
//! hashed again once the data are read: a file that changed meanwhile rejects the source.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use polars::prelude::*;

use super::{RawChunk, map_header, unchanged};
use crate::error::{Error, Rejection, Result};
use crate::quarantine::{Issue, Rule};
use crate::spec::schema::{Field, FieldType};
use crate::spec::{Encoding, Format, SourcePlan};

/// The value labels of one file: field name → delivered value (as its cell reads) → label.
pub type ValueLabels = BTreeMap<String, BTreeMap<String, String>>;

/// The part of ReadStat's API migstat uses (`readstat.h`, 1.1). Values are passed by value as a
/// 16-byte struct (a union of 8 bytes, the type, the missing tag and flags) and read only
/// through ReadStat's accessors; variables, parsers and metadata are opaque.
mod ffi {
    use std::ffi::{c_char, c_int, c_long, c_void};

    #[repr(C)]
    pub struct Parser {
        _opaque: [u8; 0],
    }
    #[repr(C)]
    pub struct Variable {
        _opaque: [u8; 0],
    }
    #[repr(C)]
    pub struct Metadata {
        _opaque: [u8; 0],
    }
    /// `readstat_value_t`: `union { float; double; int8; int16; int32; const char* } v` (8
    /// bytes), `readstat_type_t type` (4), `char tag` and two one-bit flags (4 with padding).
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Value {
        _v: u64,
        _type: c_int,
        _tag_and_flags: u32,
    }

    pub const HANDLER_OK: c_int = 0;
    pub const HANDLER_ABORT: c_int = 1;
    pub const HANDLER_SKIP_VARIABLE: c_int = 2;

    pub const TYPE_STRING: c_int = 0;
    pub const TYPE_INT8: c_int = 1;
    pub const TYPE_INT16: c_int = 2;
    pub const TYPE_INT32: c_int = 3;
    pub const TYPE_FLOAT: c_int = 4;
    pub const TYPE_DOUBLE: c_int = 5;
    pub const TYPE_STRING_REF: c_int = 6;

    pub type MetadataHandler = extern "C" fn(*mut Metadata, *mut c_void) -> c_int;
    pub type VariableHandler =
        extern "C" fn(c_int, *mut Variable, *const c_char, *mut c_void) -> c_int;
    pub type ValueHandler = extern "C" fn(c_int, *mut Variable, Value, *mut c_void) -> c_int;
    pub type ValueLabelHandler =
        extern "C" fn(*const c_char, Value, *const c_char, *mut c_void) -> c_int;
    pub type ErrorHandler = extern "C" fn(*const c_char, *mut c_void);

    #[link(name = "readstat")]
    unsafe extern "C" {
        pub fn readstat_parser_init() -> *mut Parser;
        pub fn readstat_parser_free(parser: *mut Parser);
        pub fn readstat_set_metadata_handler(p: *mut Parser, h: Option<MetadataHandler>) -> c_int;
        pub fn readstat_set_variable_handler(p: *mut Parser, h: Option<VariableHandler>) -> c_int;
        pub fn readstat_set_value_handler(p: *mut Parser, h: Option<ValueHandler>) -> c_int;
        pub fn readstat_set_value_label_handler(
            p: *mut Parser,
            h: Option<ValueLabelHandler>,
        ) -> c_int;
        pub fn readstat_set_error_handler(p: *mut Parser, h: Option<ErrorHandler>) -> c_int;
        pub fn readstat_set_row_limit(p: *mut Parser, limit: c_long) -> c_int;
        pub fn readstat_set_file_character_encoding(p: *mut Parser, enc: *const c_char) -> c_int;
        pub fn readstat_parse_sav(p: *mut Parser, path: *const c_char, ctx: *mut c_void) -> c_int;
        pub fn readstat_parse_por(p: *mut Parser, path: *const c_char, ctx: *mut c_void) -> c_int;
        pub fn readstat_parse_dta(p: *mut Parser, path: *const c_char, ctx: *mut c_void) -> c_int;
        pub fn readstat_error_message(code: c_int) -> *const c_char;

        pub fn readstat_get_row_count(m: *mut Metadata) -> c_int;
        pub fn readstat_get_file_encoding(m: *mut Metadata) -> *const c_char;

        pub fn readstat_value_type(v: Value) -> c_int;
        pub fn readstat_value_is_system_missing(v: Value) -> c_int;
        pub fn readstat_value_is_tagged_missing(v: Value) -> c_int;
        pub fn readstat_value_is_defined_missing(v: Value, var: *mut Variable) -> c_int;
        pub fn readstat_int8_value(v: Value) -> c_char;
        pub fn readstat_int16_value(v: Value) -> i16;
        pub fn readstat_int32_value(v: Value) -> i32;
        pub fn readstat_float_value(v: Value) -> f32;
        pub fn readstat_double_value(v: Value) -> f64;
        pub fn readstat_string_value(v: Value) -> *const c_char;

        pub fn readstat_variable_get_index(var: *const Variable) -> c_int;
        pub fn readstat_variable_get_name(var: *const Variable) -> *const c_char;
        pub fn readstat_variable_get_format(var: *const Variable) -> *const c_char;
    }
}

/// A C string ReadStat owns, as text (invalid UTF-8 replaced); empty for a null pointer.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that outlives the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// What a numeric variable's display format says its numbers are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Number,
    /// A date or datetime: milliseconds per unit, and the epoch.
    Time {
        ms_per_unit: f64,
        epoch: chrono::NaiveDate,
        datetime: bool,
    },
}

fn ymd(y: i32, m: u32, d: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

/// The kind of a variable from its format: SPSS formats count seconds since 1582-10-14,
/// Stata's `%td` days and `%tc` milliseconds since 1960-01-01. Other time formats (Stata's
/// `%tm`, `%tq`, `%tw`, `%ty`, SPSS `TIME`, `DTIME`) are periods or durations, not dates: their
/// numbers are read as numbers.
fn kind_of(format: Format, display: &str) -> Kind {
    let f = display.trim().to_ascii_uppercase();
    match format {
        Format::Spss => {
            let name: String = f.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
            let spss = ymd(1582, 10, 14);
            match name.as_str() {
                "DATE" | "ADATE" | "EDATE" | "SDATE" | "JDATE" | "MOYR" | "QYR" | "WKYR" => {
                    Kind::Time {
                        ms_per_unit: 1000.0,
                        epoch: spss,
                        datetime: false,
                    }
                }
                "DATETIME" | "YMDHMS" => Kind::Time {
                    ms_per_unit: 1000.0,
                    epoch: spss,
                    datetime: true,
                },
                _ => Kind::Number,
            }
        }
        _ => {
            let f = f.trim_start_matches('%').trim_start_matches('-');
            let stata = ymd(1960, 1, 1);
            if f.starts_with("TD") || f.starts_with('D') {
                Kind::Time {
                    ms_per_unit: 86_400_000.0,
                    epoch: stata,
                    datetime: false,
                }
            } else if f.starts_with("TC") {
                Kind::Time {
                    ms_per_unit: 1.0,
                    epoch: stata,
                    datetime: true,
                }
            } else {
                Kind::Number
            }
        }
    }
}

/// A number as its cell reads: whole numbers as integers, others in the shortest form that
/// reads back to the same value (of the type the file stores: `f32` for Stata `float`).
fn number_text(x: f64, single: bool) -> String {
    if x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0 {
        format!("{}", x as i64)
    } else if single {
        format!("{}", x as f32)
    } else {
        format!("{x}")
    }
}

/// A value's number, for the numeric types (`None` for strings).
fn number_of(v: ffi::Value) -> Option<(f64, bool)> {
    // SAFETY: accessors of a value ReadStat handed over by value; each reads the union as the
    // type it reports.
    unsafe {
        match ffi::readstat_value_type(v) {
            ffi::TYPE_INT8 => Some((f64::from(ffi::readstat_int8_value(v) as i8), false)),
            ffi::TYPE_INT16 => Some((f64::from(ffi::readstat_int16_value(v)), false)),
            ffi::TYPE_INT32 => Some((f64::from(ffi::readstat_int32_value(v)), false)),
            ffi::TYPE_FLOAT => Some((f64::from(ffi::readstat_float_value(v)), true)),
            ffi::TYPE_DOUBLE => Some((ffi::readstat_double_value(v), false)),
            _ => None,
        }
    }
}

/// A value's string, for the string types; `Err` holds it with its invalid bytes replaced
/// when it is not UTF-8 (ReadStat hands text over in UTF-8, converted from the file's
/// encoding; a file that misdeclares it can still carry other bytes).
fn string_of(v: ffi::Value) -> Option<std::result::Result<String, String>> {
    // SAFETY: as in `number_of`; the string lives as long as the callback.
    unsafe {
        match ffi::readstat_value_type(v) {
            ffi::TYPE_STRING | ffi::TYPE_STRING_REF => {
                let p = ffi::readstat_string_value(v);
                if p.is_null() {
                    return Some(Ok(String::new()));
                }
                let bytes = CStr::from_ptr(p).to_bytes();
                Some(match std::str::from_utf8(bytes) {
                    Ok(s) => Ok(s.to_string()),
                    Err(_) => Err(String::from_utf8_lossy(bytes).into_owned()),
                })
            }
            _ => None,
        }
    }
}

/// A cell as the text validation reads for `field`; `Err` says why it cannot be one (the rule,
/// the reason, the value as the quarantine shows it: a date as a date, not as SPSS's count of
/// seconds).
fn cell_text(
    v: ffi::Value,
    var: *mut ffi::Variable,
    kind: Kind,
    field: &Field,
) -> std::result::Result<Option<String>, (Rule, String, Option<String>)> {
    // SAFETY: accessors of a value and a variable ReadStat handed to the current callback.
    let missing = unsafe {
        ffi::readstat_value_is_system_missing(v) != 0
            || ffi::readstat_value_is_tagged_missing(v) != 0
            || ffi::readstat_value_is_defined_missing(v, var) != 0
    };
    if missing {
        return Ok(None);
    }
    match string_of(v) {
        Some(Ok(s)) => return Ok(Some(s)),
        Some(Err(lossy)) => {
            return Err((
                Rule::InvalidEncoding,
                "the text is not valid in the file's encoding (declare `encoding` on the source if the file says otherwise)".into(),
                Some(lossy),
            ));
        }
        None => {}
    }
    let Some((x, single)) = number_of(v) else {
        return Err((
            Rule::Type,
            "a value of a type ReadStat does not name".into(),
            None,
        ));
    };
    match kind {
        Kind::Time {
            ms_per_unit,
            epoch,
            datetime,
        } => {
            let ms = (x * ms_per_unit).round();
            let at = (ms.is_finite() && ms.abs() < 1e17)
                .then(|| {
                    epoch
                        .and_time(chrono::NaiveTime::MIN)
                        .checked_add_signed(chrono::TimeDelta::milliseconds(ms as i64))
                })
                .flatten();
            match at {
                Some(dt) if matches!(field.field_type, FieldType::Date(_)) => {
                    super::date_time_text(dt, &dt.to_string(), field)
                        .map_err(|why| (Rule::Type, why, Some(dt.to_string())))
                }
                Some(dt) if datetime => Ok(Some(dt.to_string())),
                Some(dt) => Ok(Some(dt.date().to_string())),
                None => Err((
                    Rule::Type,
                    format!(
                        "{} is outside the dates this file's {} format can place",
                        number_text(x, single),
                        if datetime { "datetime" } else { "date" }
                    ),
                    Some(number_text(x, single)),
                )),
            }
        }
        Kind::Number => Ok(Some(match (&field.field_type, x) {
            (FieldType::Boolean, 1.0) => {
                field.true_values.first().cloned().unwrap_or("true".into())
            }
            (FieldType::Boolean, 0.0) => field
                .false_values
                .first()
                .cloned()
                .unwrap_or("false".into()),
            _ => number_text(x, single),
        })),
    }
}

/// A label's value as a cell of its variable reads (labels of Stata's extended missing values
/// label nulls, and are left out).
fn label_key(v: ffi::Value) -> Option<String> {
    // SAFETY: accessor of a value handed to the current callback.
    if unsafe { ffi::readstat_value_is_tagged_missing(v) } != 0 {
        return None;
    }
    string_of(v)
        .map(|s| s.unwrap_or_else(|lossy| lossy))
        .or_else(|| number_of(v).map(|(x, single)| number_text(x, single)))
}

/// What the first pass learns: each variable's name and kind, its label set, the labels.
#[derive(Default)]
struct Dictionary {
    format: Option<Format>,
    names: Vec<String>,
    kinds: Vec<Kind>,
    label_set_of: Vec<String>,
    label_sets: BTreeMap<String, BTreeMap<String, String>>,
    rows: Option<u64>,
    encoding: String,
    error: Option<String>,
}

extern "C" fn dict_metadata(m: *mut ffi::Metadata, ctx: *mut c_void) -> c_int {
    // SAFETY: `ctx` is the `Dictionary` `parse` was given; `m` is valid during the callback.
    let d = unsafe { &mut *(ctx as *mut Dictionary) };
    let rows = unsafe { ffi::readstat_get_row_count(m) };
    d.rows = u64::try_from(rows).ok();
    d.encoding = unsafe { text(ffi::readstat_get_file_encoding(m)) };
    ffi::HANDLER_OK
}

extern "C" fn dict_variable(
    _index: c_int,
    var: *mut ffi::Variable,
    val_labels: *const c_char,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: as in `dict_metadata`.
    let d = unsafe { &mut *(ctx as *mut Dictionary) };
    let (name, display) = unsafe {
        (
            text(ffi::readstat_variable_get_name(var)),
            text(ffi::readstat_variable_get_format(var)),
        )
    };
    d.names.push(name);
    d.kinds
        .push(kind_of(d.format.unwrap_or(Format::Spss), &display));
    d.label_set_of.push(unsafe { text(val_labels) });
    ffi::HANDLER_OK
}

extern "C" fn dict_label(
    set: *const c_char,
    value: ffi::Value,
    label: *const c_char,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: as in `dict_metadata`.
    let d = unsafe { &mut *(ctx as *mut Dictionary) };
    let (set, label) = unsafe { (text(set), text(label)) };
    if let Some(key) = label_key(value) {
        d.label_sets.entry(set).or_default().insert(key, label);
    }
    ffi::HANDLER_OK
}

extern "C" fn dict_error(message: *const c_char, ctx: *mut c_void) {
    // SAFETY: as in `dict_metadata`.
    let d = unsafe { &mut *(ctx as *mut Dictionary) };
    if d.error.is_none() {
        let m = unsafe { text(message) };
        d.error = Some(crate::error::cap_bytes(&m, 512));
    }
}

/// Runs one ReadStat parse of `path`; `Err` carries ReadStat's message.
///
/// # Safety
/// `ctx` is what the handlers set on `parser` expect, and outlives the call.
unsafe fn parse(
    parser: *mut ffi::Parser,
    format: Format,
    path: &Path,
    ctx: *mut c_void,
) -> std::result::Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| "the path holds a NUL byte".to_string())?;
    let por = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("por"));
    // SAFETY: the caller's contract; `c_path` lives through the call.
    let code = unsafe {
        match (format, por) {
            (Format::Spss, true) => ffi::readstat_parse_por(parser, c_path.as_ptr(), ctx),
            (Format::Spss, false) => ffi::readstat_parse_sav(parser, c_path.as_ptr(), ctx),
            _ => ffi::readstat_parse_dta(parser, c_path.as_ptr(), ctx),
        }
    };
    if code == 0 {
        Ok(())
    } else {
        // SAFETY: ReadStat returns a static string for any code.
        Err(unsafe { text(ffi::readstat_error_message(code)) })
    }
}

/// A ReadStat parser, freed when dropped.
struct ParserBox(*mut ffi::Parser);

impl ParserBox {
    fn new(encoding: Option<Encoding>) -> std::result::Result<Self, String> {
        // SAFETY: plain constructor; null on allocation failure.
        let p = unsafe { ffi::readstat_parser_init() };
        if p.is_null() {
            return Err("ReadStat could not allocate a parser".into());
        }
        let parser = ParserBox(p);
        if let Some(e) = encoding {
            let name = match e {
                Encoding::Utf8 => c"UTF-8",
                Encoding::Windows1252 => c"WINDOWS-1252",
            };
            // SAFETY: a live parser; ReadStat keeps the pointer, and the literal is static.
            unsafe { ffi::readstat_set_file_character_encoding(p, name.as_ptr()) };
        }
        Ok(parser)
    }
}

impl Drop for ParserBox {
    fn drop(&mut self) {
        // SAFETY: allocated by `readstat_parser_init`, freed once.
        unsafe { ffi::readstat_parser_free(self.0) };
    }
}

/// The rows of one chunk as the second pass collects them.
struct Building {
    columns: Vec<Vec<Option<String>>>,
    broken: Vec<bool>,
    issues: Vec<Issue>,
    first_record: u64,
}

impl Building {
    fn new(n_fields: usize, first_record: u64) -> Self {
        Building {
            columns: vec![Vec::new(); n_fields],
            broken: Vec::new(),
            issues: Vec::new(),
            first_record,
        }
    }
}

enum Message {
    Chunk(Building),
    /// The parse ended: `Err` carries ReadStat's message.
    Done(std::result::Result<(), String>),
}

/// The second pass's state, owned by its thread.
struct DataPass {
    /// Schema field of each variable (by ReadStat's variable index), if it is read.
    slot_of: Vec<Option<usize>>,
    kinds: Vec<Kind>,
    fields: Vec<Field>,
    names: Vec<String>,
    chunk_rows: usize,
    current: Building,
    /// Case index of the last row begun (-1 before the first).
    last_obs: i64,
    records: u64,
    tx: SyncSender<Message>,
    error: Option<String>,
    stopped: bool,
}

impl DataPass {
    fn begin_row(&mut self) -> bool {
        if self.current.broken.len() >= self.chunk_rows {
            let next = Building::new(self.fields.len(), self.records + 1);
            let full = std::mem::replace(&mut self.current, next);
            if self.tx.send(Message::Chunk(full)).is_err() {
                self.stopped = true;
                return false;
            }
        }
        self.records += 1;
        for c in &mut self.current.columns {
            c.push(None);
        }
        self.current.broken.push(false);
        true
    }
}

extern "C" fn data_variable(
    index: c_int,
    _var: *mut ffi::Variable,
    _val_labels: *const c_char,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: `ctx` is the `DataPass` of this thread's parse.
    let p = unsafe { &mut *(ctx as *mut DataPass) };
    match usize::try_from(index)
        .ok()
        .and_then(|i| p.slot_of.get(i).copied().flatten())
    {
        Some(_) => ffi::HANDLER_OK,
        None => ffi::HANDLER_SKIP_VARIABLE,
    }
}

extern "C" fn data_value(
    obs: c_int,
    var: *mut ffi::Variable,
    value: ffi::Value,
    ctx: *mut c_void,
) -> c_int {
    // A panic must not unwind into C: it aborts the parse instead (and is reported as such).
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in `data_variable`; `var` is valid during the callback.
        let p = unsafe { &mut *(ctx as *mut DataPass) };
        take_value(p, obs, var, value)
    }))
    .unwrap_or(ffi::HANDLER_ABORT)
}

fn take_value(p: &mut DataPass, obs: c_int, var: *mut ffi::Variable, value: ffi::Value) -> c_int {
    if p.stopped {
        return ffi::HANDLER_ABORT;
    }
    while i64::from(obs) > p.last_obs {
        if !p.begin_row() {
            return ffi::HANDLER_ABORT;
        }
        p.last_obs += 1;
    }
    // SAFETY: `var` is the variable ReadStat handed to this callback.
    let index = unsafe { ffi::readstat_variable_get_index(var) };
    let Some((vi, fi)) = usize::try_from(index)
        .ok()
        .and_then(|i| Some((i, p.slot_of.get(i).copied().flatten()?)))
    else {
        return ffi::HANDLER_OK;
    };
    let Some(row) = p.current.broken.len().checked_sub(1) else {
        return ffi::HANDLER_OK; // a value before any case: not ReadStat's way
    };
    match cell_text(value, var, p.kinds[vi], &p.fields[fi]) {
        Ok(t) => p.current.columns[fi][row] = t,
        Err((rule, why, raw)) => {
            p.current.broken[row] = true;
            p.current.issues.push(Issue {
                row: row as u32,
                field: Some(fi),
                rule,
                raw,
                message: format!(
                    "{why} (case {}, variable {})",
                    p.records,
                    crate::error::quote(&p.names[vi])
                ),
            });
        }
    }
    ffi::HANDLER_OK
}

extern "C" fn data_error(message: *const c_char, ctx: *mut c_void) {
    // SAFETY: as in `data_variable`.
    let p = unsafe { &mut *(ctx as *mut DataPass) };
    if p.error.is_none() {
        let m = unsafe { text(message) };
        p.error = Some(crate::error::cap_bytes(&m, 512));
    }
}

/// SPSS variable names are case-insensitive (a portable `.por` file writes them in capitals):
/// a variable named like exactly one schema field but for case takes the field's spelling,
/// unless another variable already has it. Stata names are case-sensitive and stay as they are.
fn spss_names(names: &mut [String], fields: &[Field]) {
    let exact: Vec<String> = names.to_vec();
    for name in names.iter_mut() {
        if fields.iter().any(|f| f.name == *name) {
            continue;
        }
        let mut like = fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name) && !exact.contains(&f.name));
        if let (Some(f), None) = (like.next(), like.next()) {
            *name = f.name.clone();
        }
    }
}

/// Reads one SPSS or Stata file chunk by chunk (see the module doc).
pub struct StatChunks {
    source_id: String,
    path: PathBuf,
    file_index: usize,
    expected: (u64, String),
    fields: Vec<Field>,
    labels: Arc<ValueLabels>,
    rx: Option<Receiver<Message>>,
    thread: Option<std::thread::JoinHandle<()>>,
    done: bool,
}

impl StatChunks {
    pub(super) fn open(
        src: &SourcePlan,
        file_index: usize,
        chunk_rows: usize,
        expected: (u64, String),
    ) -> Result<Self> {
        let path = src.files[file_index].clone();
        let reject = |why: String| {
            Error::Rejected(vec![Rejection::new(
                src.id.as_str(),
                format!("{}: {why}", path.display()),
            )])
        };
        let what = if src.format == Format::Spss {
            "an SPSS file"
        } else {
            "a Stata file"
        };
        // Pass 1: the dictionary. No value handler and one row: the data are not decoded.
        let mut dict = Dictionary {
            format: Some(src.format),
            ..Default::default()
        };
        {
            let parser = ParserBox::new(src.declared_encoding).map_err(&reject)?;
            // SAFETY: a live parser; the handlers match ReadStat's signatures and take `dict`,
            // which outlives the parse.
            let parsed = unsafe {
                ffi::readstat_set_metadata_handler(parser.0, Some(dict_metadata));
                ffi::readstat_set_variable_handler(parser.0, Some(dict_variable));
                ffi::readstat_set_value_label_handler(parser.0, Some(dict_label));
                ffi::readstat_set_error_handler(parser.0, Some(dict_error));
                ffi::readstat_set_row_limit(parser.0, 1);
                parse(
                    parser.0,
                    src.format,
                    &path,
                    &mut dict as *mut Dictionary as *mut c_void,
                )
            };
            if let Err(why) = parsed {
                let detail = dict
                    .error
                    .take()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(reject(format!("cannot be read as {what} ({why}{detail})")));
            }
        }
        if src.format == Format::Spss {
            spss_names(&mut dict.names, &src.schema.fields);
        }
        let map = map_header(&dict.names, &src.schema, &src.id, &path, None)?;
        let mut slot_of = vec![None; dict.names.len()];
        for (fi, &vi) in map.iter().enumerate() {
            slot_of[vi] = Some(fi);
        }
        let mut labels = ValueLabels::new();
        for (fi, &vi) in map.iter().enumerate() {
            if let Some(set) = dict.label_sets.get(&dict.label_set_of[vi]) {
                labels.insert(src.schema.fields[fi].name.clone(), set.clone());
            }
        }
        // Pass 2: the data, on a thread that hands out chunks.
        let (tx, rx) = sync_channel::<Message>(1);
        let state = DataPass {
            slot_of,
            kinds: dict.kinds,
            fields: src.schema.fields.clone(),
            names: dict.names,
            chunk_rows: chunk_rows.max(1),
            current: Building::new(src.schema.fields.len(), 1),
            last_obs: -1,
            records: 0,
            tx,
            error: None,
            stopped: false,
        };
        let (format, encoding, file) = (src.format, src.declared_encoding, path.clone());
        let thread = std::thread::Builder::new()
            .name("readstat".into())
            .spawn(move || {
                let mut state = state;
                let outcome = ParserBox::new(encoding).and_then(|parser| {
                    // SAFETY: as in pass 1, with `state` as the handlers' context.
                    unsafe {
                        ffi::readstat_set_variable_handler(parser.0, Some(data_variable));
                        ffi::readstat_set_value_handler(parser.0, Some(data_value));
                        ffi::readstat_set_error_handler(parser.0, Some(data_error));
                        parse(
                            parser.0,
                            format,
                            &file,
                            &mut state as *mut DataPass as *mut c_void,
                        )
                    }
                });
                if state.stopped {
                    return; // the reader is gone
                }
                let outcome = outcome.map_err(|why| match state.error.take() {
                    Some(e) => format!("{why}: {e}"),
                    None => why,
                });
                let last = std::mem::replace(&mut state.current, Building::new(0, 0));
                if !last.broken.is_empty() && state.tx.send(Message::Chunk(last)).is_err() {
                    return;
                }
                let _ = state.tx.send(Message::Done(outcome));
            })
            .map_err(|e| reject(format!("cannot start a reader thread: {e}")))?;
        Ok(StatChunks {
            source_id: src.id.clone(),
            path,
            file_index,
            expected,
            fields: src.schema.fields.clone(),
            labels: Arc::new(labels),
            rx: Some(rx),
            thread: Some(thread),
            done: false,
        })
    }

    /// The file's value labels by field.
    pub fn labels(&self) -> Arc<ValueLabels> {
        Arc::clone(&self.labels)
    }

    pub(super) fn next_chunk(&mut self) -> Result<Option<RawChunk>> {
        if self.done {
            return Ok(None);
        }
        let message = self.rx.as_ref().and_then(|rx| rx.recv().ok());
        match message {
            Some(Message::Chunk(b)) => Ok(Some(RawChunk {
                file_index: self.file_index,
                columns: self
                    .fields
                    .iter()
                    .zip(b.columns)
                    .map(|(f, c)| {
                        StringChunked::from_iter_options(f.name.as_str().into(), c.into_iter())
                    })
                    .collect(),
                lines: None,
                first_record: b.first_record,
                broken: b.broken,
                issues: b.issues,
                labels: Some(Arc::clone(&self.labels)),
            })),
            Some(Message::Done(outcome)) => {
                self.done = true;
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                outcome.map_err(|why| {
                    Error::Rejected(vec![Rejection::new(
                        self.source_id.as_str(),
                        format!(
                            "{}: reading its data failed ({why}); the records before the failure are not published",
                            self.path.display()
                        ),
                    )])
                })?;
                // The file was parsed twice by path: it must still be the file the run began with.
                unchanged(
                    &self.source_id,
                    &self.path,
                    &self.expected,
                    crate::manifest::hash_file(&self.path)?,
                )?;
                Ok(None)
            }
            None => {
                self.done = true;
                Err(Error::Internal(format!(
                    "{}: the ReadStat reader thread stopped without a word",
                    self.path.display()
                )))
            }
        }
    }
}

impl Drop for StatChunks {
    fn drop(&mut self) {
        // Dropping the receiver makes the thread's next send fail: its parse aborts.
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats_say_which_numbers_are_dates() {
        let spss_date = Kind::Time {
            ms_per_unit: 1000.0,
            epoch: ymd(1582, 10, 14),
            datetime: false,
        };
        assert_eq!(kind_of(Format::Spss, "DATE11"), spss_date);
        assert_eq!(kind_of(Format::Spss, "adate10"), spss_date);
        assert!(matches!(
            kind_of(Format::Spss, "DATETIME20"),
            Kind::Time { datetime: true, .. }
        ));
        assert_eq!(kind_of(Format::Spss, "F8.2"), Kind::Number);
        assert_eq!(kind_of(Format::Spss, "TIME8"), Kind::Number);
        assert!(matches!(
            kind_of(Format::Stata, "%td"),
            Kind::Time {
                ms_per_unit: 86_400_000.0,
                datetime: false,
                ..
            }
        ));
        assert!(matches!(
            kind_of(Format::Stata, "%-tdD_m_Y"),
            Kind::Time {
                datetime: false,
                ..
            }
        ));
        assert!(matches!(
            kind_of(Format::Stata, "%tc"),
            Kind::Time { datetime: true, .. }
        ));
        assert_eq!(kind_of(Format::Stata, "%tm"), Kind::Number);
        assert_eq!(kind_of(Format::Stata, "%10.0g"), Kind::Number);
        assert_eq!(kind_of(Format::Stata, "%9s"), Kind::Number);
    }

    #[test]
    fn numbers_read_as_their_cells() {
        assert_eq!(number_text(2.0, false), "2");
        assert_eq!(number_text(-1.0, false), "-1");
        assert_eq!(number_text(34.5, false), "34.5");
        // A Stata float holding 0.1 reads as 0.1, not 0.10000000149011612.
        assert_eq!(number_text(f64::from(0.1f32), true), "0.1");
        assert_eq!(number_text(1e20, false), "100000000000000000000");
    }
}
