//! The finest cells of a Parquet file counted on its dictionary codes (`migstat tabulate`).
//!
//! Input: a Parquet file and the names of its code columns. Output: the number of records in
//! each finest cell (a null as `_U`), or `None` when a column is not of a shape read here, and
//! the caller takes the general path (polars' streaming group-by over the decoded values).
//!
//! Code columns are low-cardinality, and every common writer (polars, arrow, DuckDB, Spark)
//! stores them dictionary-encoded: a row group's column chunk is a dictionary page of its
//! distinct values and data pages of small integers into it. Decoding the values only to hash
//! them again throws that away. Here each column chunk becomes one id per row (the
//! dictionary's ids remapped to the chunk's distinct values, a null its own id) without
//! building a string per row; a row group's records are then counted in a dense array indexed
//! by the combined ids (a hash map when the product of the distinct counts is large), and only
//! the non-empty cells are turned into codes. Row groups are counted in parallel and their
//! cells added: integer sums, so the result does not depend on the thread count.
//!
//! Read here: flat (non-nested) columns of strings (`BYTE_ARRAY` annotated as UTF-8 or enum),
//! of signed integers (`INT32`/`INT64`) and of dates (`INT32` `DATE`), the latter two written
//! as polars casts them to text, in
//! `PLAIN`, `PLAIN_DICTIONARY` or `RLE_DICTIONARY` data pages (v1 with RLE levels, or v2), any
//! compression polars reads. Anything else (timestamps, booleans, decimals, floats, unsigned integers, delta
//! encodings, invalid UTF-8, a page that does not decode) returns `None`: the general path gives
//! the same cells, or names the problem. Memory: one `u32` per row and column of the row groups
//! in flight (one per thread).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::Path;

use polars_buffer::Buffer;
use polars_parquet::parquet::encoding::hybrid_rle::HybridRleDecoder;
use polars_parquet::parquet::metadata::{ColumnChunkMetadata, RowGroupMetadata};
use polars_parquet::parquet::page::split_buffer;
use polars_parquet::parquet::read::{BasicDecompressor, PageReader, read_metadata};
use polars_parquet::parquet::schema::types::{
    IntegerType, PhysicalType, PrimitiveConvertedType, PrimitiveLogicalType,
};
use polars_parquet::parquet::{encoding::Encoding, read::levels::get_bit_width};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use chrono::Datelike;

use crate::calendar::date_of_days;
use crate::vocab::UNKNOWN;

/// At most this many cells are counted in a dense array per row group (8 bytes each); a larger
/// product of the columns' distinct counts is counted in a hash map of the cells that occur.
const DENSE_CELLS: u64 = 1 << 22;

/// The id of a null in a column chunk's ids (its distinct values take 0..n).
const NULL: u32 = u32::MAX;

/// How a column's values are written as codes.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int32,
    Int64,
    /// Days since 1970-01-01, written `YYYY-MM-DD` (years 0 to 9999; others are left to the
    /// general path).
    Date,
}

/// One column chunk as ids: `ids[row]` indexes `values` (or is [`NULL`]).
struct Codes {
    values: Vec<String>,
    ids: Vec<u32>,
}

/// A thread's buffers, reused from row group to row group (fresh ones of a row group's size
/// each time cost as much in page faults as the decoding itself).
#[derive(Default)]
struct Scratch {
    /// Each column's ids (moved into its [`Codes`] and back).
    ids: Vec<Vec<u32>>,
    levels: Vec<u32>,
    indices: Vec<u32>,
    cells: Vec<u32>,
}

/// Decode a hybrid RLE / bit-packed run of `n` values, appended to `out`.
fn decode_rle(data: &[u8], bits: u32, n: usize, out: &mut Vec<u32>) -> Result<(), Why> {
    use polars_parquet::parquet::encoding::hybrid_rle::HybridRleChunk;
    let start = out.len();
    for chunk in HybridRleDecoder::new(data, bits, n).into_chunk_iter() {
        match chunk.map_err(|_| Why::Undecodable)? {
            HybridRleChunk::Rle(value, size) => out.resize(out.len() + size, value),
            HybridRleChunk::Bitpacked(decoder) => decoder.collect_into(out),
        }
    }
    if out.len() == start + n {
        Ok(())
    } else {
        Err(Why::Undecodable)
    }
}

/// Why a file is left to the general path (for the log; the general path names real errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// The file or its footer could not be read here.
    File,
    /// A column of a type, nesting, encoding or value not read here.
    Column { column: String, why: String },
    /// A page that does not decode: the file is damaged (the general path would fail too, or
    /// panic).
    Damaged(String),
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unread::File => write!(f, "the file's footer was not read"),
            Unread::Column { column, why } => write!(f, "column {column}: {why}"),
            Unread::Damaged(detail) => write!(f, "{detail}"),
        }
    }
}

/// Why one column chunk was not read.
enum Why {
    Encoding(Encoding),
    /// A value the general path writes differently (a date outside years 0 to 9999).
    Value,
    Undecodable,
}

/// The records of `path` counted by the columns `dims` (in that order), or why a column is
/// left to the general path (see the module documentation). Columns that are missing are the
/// caller's concern (it checks the schema first).
pub fn finest_cells(path: &Path, dims: &[String]) -> Result<BTreeMap<Vec<String>, u64>, Unread> {
    let mut file = File::open(path).map_err(|_| Unread::File)?;
    let meta = read_metadata(&mut file).map_err(|_| Unread::File)?;
    let columns = meta.schema_descr.columns();
    let mut picked = Vec::with_capacity(dims.len());
    for d in dims {
        let unread = |why: &str| Unread::Column {
            column: crate::error::quote(d),
            why: why.to_string(),
        };
        let i = columns
            .iter()
            .position(|c| c.path_in_schema.len() == 1 && c.path_in_schema[0].as_str() == d)
            .ok_or_else(|| unread("not a top-level column"))?;
        let c = &columns[i].descriptor;
        if c.max_rep_level != 0 || c.max_def_level > 1 {
            return Err(unread("nested"));
        }
        let kind = kind(&c.primitive_type).ok_or_else(|| {
            unread(&format!(
                "{:?} ({:?}), read only by the general path",
                c.primitive_type.physical_type, c.primitive_type.logical_type
            ))
        })?;
        picked.push((i, kind, d.as_str()));
    }
    let partials: Vec<Result<RowGroupCells, Unread>> = meta
        .row_groups
        .par_iter()
        .map_init(Scratch::default, |scratch, rg| {
            count_row_group(&file, rg, &picked, scratch)
        })
        .collect();
    // Row groups added in file order (the first damaged one is the one named): each one's
    // values interned per column, its cells keyed by those ids without building a string.
    let mut interned: Vec<FxHashMap<String, u32>> = vec![FxHashMap::default(); picked.len()];
    let mut texts: Vec<Vec<String>> = vec![Vec::new(); picked.len()];
    let mut cells: FxHashMap<Vec<u32>, u64> = FxHashMap::default();
    let mut key = vec![0u32; picked.len()];
    for partial in partials {
        let part = partial?;
        let global: Vec<Vec<u32>> = part
            .values
            .iter()
            .enumerate()
            .map(|(k, values)| {
                values
                    .iter()
                    .map(String::as_str)
                    .chain(std::iter::once(UNKNOWN))
                    .map(|v| {
                        *interned[k].entry(v.to_string()).or_insert_with(|| {
                            texts[k].push(v.to_string());
                            (texts[k].len() - 1) as u32
                        })
                    })
                    .collect()
            })
            .collect();
        for (mut i, n) in part.counted {
            for k in (0..key.len()).rev() {
                let r = part.radix[k];
                key[k] = global[k][(i % r) as usize];
                i /= r;
            }
            match cells.get_mut(key.as_slice()) {
                Some(c) => *c += n,
                None => {
                    cells.insert(key.clone(), n);
                }
            }
        }
    }
    Ok(cells
        .into_iter()
        .map(|(ids, n)| {
            let key = ids
                .iter()
                .zip(&texts)
                .map(|(&id, t)| t[id as usize].clone())
                .collect();
            (key, n)
        })
        .fold(BTreeMap::new(), |mut m, (k, n)| {
            *m.entry(k).or_insert(0) += n;
            m
        }))
}

/// One row group's cells: each column's values (local id → text; the id past the last is a
/// null), the radix of each column (its values + 1) and a count per mixed-radix cell index.
struct RowGroupCells {
    values: Vec<Vec<String>>,
    radix: Vec<u64>,
    counted: Vec<(u64, u64)>,
}

fn kind(t: &polars_parquet::parquet::schema::types::PrimitiveType) -> Option<Kind> {
    let signed = |i: &IntegerType| {
        matches!(
            i,
            IntegerType::Int8 | IntegerType::Int16 | IntegerType::Int32 | IntegerType::Int64
        )
    };
    match (t.physical_type, &t.logical_type, &t.converted_type) {
        (
            PhysicalType::ByteArray,
            Some(PrimitiveLogicalType::String | PrimitiveLogicalType::Enum),
            _,
        )
        | (
            PhysicalType::ByteArray,
            None,
            Some(PrimitiveConvertedType::Utf8 | PrimitiveConvertedType::Enum),
        ) => Some(Kind::Text),
        (
            PhysicalType::Int32,
            None,
            None
            | Some(
                PrimitiveConvertedType::Int8
                | PrimitiveConvertedType::Int16
                | PrimitiveConvertedType::Int32,
            ),
        ) => Some(Kind::Int32),
        (PhysicalType::Int32, Some(PrimitiveLogicalType::Date), _)
        | (PhysicalType::Int32, None, Some(PrimitiveConvertedType::Date)) => Some(Kind::Date),
        (PhysicalType::Int64, None, None | Some(PrimitiveConvertedType::Int64)) => {
            Some(Kind::Int64)
        }
        (PhysicalType::Int32, Some(PrimitiveLogicalType::Integer(i)), _) if signed(i) => {
            Some(Kind::Int32)
        }
        (PhysicalType::Int64, Some(PrimitiveLogicalType::Integer(i)), _) if signed(i) => {
            Some(Kind::Int64)
        }
        _ => None,
    }
}

/// One row group's cells: each column's ids, then a count per combination of ids.
fn count_row_group(
    file: &File,
    rg: &RowGroupMetadata,
    picked: &[(usize, Kind, &str)],
    scratch: &mut Scratch,
) -> Result<RowGroupCells, Unread> {
    let chunks = rg.parquet_columns();
    let rows = rg.num_rows();
    scratch.ids.resize_with(picked.len(), Vec::new);
    let codes: Vec<Codes> = picked
        .iter()
        .enumerate()
        .map(|(k, (i, kind, name))| {
            let ids = std::mem::take(&mut scratch.ids[k]);
            chunks
                .get(*i)
                .ok_or(Why::Undecodable)
                .and_then(|chunk| column_codes(file, chunk, *kind, rows, ids, scratch))
                .map_err(|why| {
                    let column = crate::error::quote(name);
                    match why {
                        Why::Encoding(e) => Unread::Column {
                            column,
                            why: format!("{e:?} pages, read only by the general path"),
                        },
                        Why::Value => Unread::Column {
                            column,
                            why: "a date outside years 0 to 9999".to_string(),
                        },
                        Why::Undecodable => Unread::Damaged(format!(
                            "column {column} of the row group starting at byte {}: a page does not decode",
                            rg.full_byte_range().start
                        )),
                    }
                })
        })
        .collect::<Result<_, _>>()?;
    // Each column's ids with its null moved to the last slot: a mixed-radix index of the cell.
    let radix: Vec<u64> = codes.iter().map(|c| c.values.len() as u64 + 1).collect();
    let size = radix
        .iter()
        .try_fold(1u64, |acc, r| acc.checked_mul(*r))
        .ok_or_else(|| Unread::Column {
            column: "(all)".to_string(),
            why: "more cells than 2^64".to_string(),
        })?;
    // The cells' indices built column by column (tight loops over one column's ids), then
    // counted: in a dense array when the cells are few, else in a map of those that occur.
    let mut counted: Vec<(u64, u64)> = if size <= DENSE_CELLS {
        let index = &mut scratch.cells;
        index.clear();
        index.resize(rows, 0);
        for (c, r) in codes.iter().zip(&radix) {
            let (r, null) = (*r as u32, (*r - 1) as u32);
            for (slot, &id) in index.iter_mut().zip(&c.ids) {
                *slot = *slot * r + if id == NULL { null } else { id };
            }
        }
        let mut dense = vec![0u64; size as usize];
        for &i in index.iter() {
            dense[i as usize] += 1;
        }
        dense
            .into_iter()
            .enumerate()
            .filter(|(_, n)| *n > 0)
            .map(|(i, n)| (i as u64, n))
            .collect()
    } else {
        let mut index = vec![0u64; rows];
        for (c, r) in codes.iter().zip(&radix) {
            for (slot, &id) in index.iter_mut().zip(&c.ids) {
                *slot = *slot * r + if id == NULL { r - 1 } else { u64::from(id) };
            }
        }
        let mut sparse: FxHashMap<u64, u64> = FxHashMap::default();
        for i in index {
            *sparse.entry(i).or_insert(0) += 1;
        }
        sparse.into_iter().collect()
    };
    counted.sort_unstable();
    let mut values = Vec::with_capacity(codes.len());
    for (k, c) in codes.into_iter().enumerate() {
        scratch.ids[k] = c.ids;
        values.push(c.values);
    }
    Ok(RowGroupCells {
        values,
        radix,
        counted,
    })
}

/// A column chunk's ids, one per row: its dictionary page (if any) read once, each data page's
/// dictionary indices remapped, plain values looked up among the values seen so far.
fn column_codes(
    file: &File,
    chunk: &ColumnChunkMetadata,
    kind: Kind,
    rows: usize,
    mut ids: Vec<u32>,
    scratch: &mut Scratch,
) -> Result<Codes, Why> {
    let range = chunk.byte_range();
    let len = range
        .end
        .checked_sub(range.start)
        .and_then(|l| usize::try_from(l).ok())
        .ok_or(Why::Undecodable)?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, range.start)
        .map_err(|_| Why::Undecodable)?;
    let reader = PageReader::new(Cursor::new(Buffer::from(bytes)), chunk, vec![], usize::MAX);
    let mut pages = BasicDecompressor::new(reader, vec![]);
    let descriptor = &chunk.descriptor().descriptor;
    let optional = descriptor.max_def_level == 1;

    let mut seen: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
    let mut values: Vec<String> = Vec::new();
    let mut intern = |raw: &[u8], values: &mut Vec<String>| -> Result<u32, Why> {
        if let Some(id) = seen.get(raw) {
            return Ok(*id);
        }
        let four = || <[u8; 4]>::try_from(raw).map_err(|_| Why::Undecodable);
        let text = match kind {
            Kind::Text => std::str::from_utf8(raw)
                .map_err(|_| Why::Undecodable)?
                .to_string(),
            Kind::Int32 => i32::from_le_bytes(four()?).to_string(),
            Kind::Int64 => <[u8; 8]>::try_from(raw)
                .map(i64::from_le_bytes)
                .map_err(|_| Why::Undecodable)?
                .to_string(),
            Kind::Date => date_of_days(i32::from_le_bytes(four()?))
                .filter(|date| (0..=9999).contains(&date.year()))
                .ok_or(Why::Value)?
                .format("%Y-%m-%d")
                .to_string(),
        };
        let id = u32::try_from(values.len())
            .ok()
            .filter(|id| *id != NULL)
            .ok_or(Why::Undecodable)?;
        values.push(text);
        seen.insert(raw.to_vec(), id);
        Ok(id)
    };

    // The dictionary page: PLAIN values; their ids among the chunk's distinct values.
    let dictionary: Vec<u32> = match pages.read_dict_page().map_err(|_| Why::Undecodable)? {
        None => Vec::new(),
        Some(page) => {
            let mut ids = Vec::with_capacity(page.num_values);
            let mut plain = Plain::new(&page.buffer, kind);
            for _ in 0..page.num_values {
                let raw = plain.next().ok_or(Why::Undecodable)?;
                ids.push(intern(raw, &mut values)?);
            }
            ids
        }
    };

    // Distinct dictionary values (every writer's case) are ids 0, 1, 2, … in order.
    let identity = dictionary
        .iter()
        .enumerate()
        .all(|(k, &id)| id as usize == k);
    ids.clear();
    ids.reserve(rows);
    let Scratch {
        levels: levels_buf,
        indices: idx,
        ..
    } = scratch;
    let width = get_bit_width(descriptor.max_def_level);
    while let Some(item) = pages.next() {
        let page = item
            .and_then(|item| item.decompress(&mut pages))
            .map_err(|_| Why::Undecodable)?;
        let levels = page.num_values();
        if optional && page.definition_level_encoding() != Encoding::Rle {
            return Err(Why::Encoding(page.definition_level_encoding()));
        }
        let split = split_buffer(&page).map_err(|_| Why::Undecodable)?;
        // Which of the page's rows hold a value (all of them in a required column).
        levels_buf.clear();
        if optional {
            decode_rle(split.def, width, levels, levels_buf)?;
        }
        idx.clear();
        let non_null = if optional {
            levels_buf.iter().filter(|l| **l == 1).count()
        } else {
            levels
        };
        // The page's values as the chunk's ids, appended to `ids` (nulls placed below).
        let start = ids.len();
        match page.encoding() {
            Encoding::PlainDictionary | Encoding::RleDictionary => {
                let (&bits, rest) = split.values.split_first().ok_or(Why::Undecodable)?;
                ids.reserve(levels);
                if identity {
                    // The dictionary's entries are the chunk's ids: its indices are the ids.
                    decode_rle(rest, u32::from(bits), non_null, &mut ids)?;
                    // (The largest index, a vectorised reduction, checks them all at once.)
                    let max = ids[start..].iter().copied().fold(0, u32::max);
                    if non_null > 0 && max as usize >= dictionary.len() {
                        return Err(Why::Undecodable);
                    }
                } else {
                    decode_rle(rest, u32::from(bits), non_null, idx)?;
                    for &i in idx.iter() {
                        ids.push(*dictionary.get(i as usize).ok_or(Why::Undecodable)?);
                    }
                }
            }
            Encoding::Plain => {
                let mut plain = Plain::new(split.values, kind);
                ids.reserve(levels);
                for _ in 0..non_null {
                    let raw = plain.next().ok_or(Why::Undecodable)?;
                    ids.push(intern(raw, &mut values)?);
                }
            }
            other => return Err(Why::Encoding(other)),
        }
        if non_null < levels {
            // Spread the values over their rows, from the last, nulls in between.
            ids.resize(start + levels, NULL);
            let mut from = start + non_null;
            for (row, level) in levels_buf.iter().enumerate().rev() {
                if *level == 1 {
                    from -= 1;
                    ids[start + row] = ids[from];
                } else {
                    ids[start + row] = NULL;
                }
            }
        }
    }
    if ids.len() == rows {
        Ok(Codes { values, ids })
    } else {
        Err(Why::Undecodable)
    }
}

/// PLAIN values of a page, one after the other.
struct Plain<'a> {
    data: &'a [u8],
    kind: Kind,
}

impl<'a> Plain<'a> {
    fn new(data: &'a [u8], kind: Kind) -> Self {
        Plain { data, kind }
    }

    /// The next value's bytes (a string's without its length), `None` past the end.
    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, skip): (usize, usize) = match self.kind {
            Kind::Text => {
                let head: [u8; 4] = self.data.get(..4)?.try_into().ok()?;
                (u32::from_le_bytes(head) as usize, 4)
            }
            Kind::Int32 | Kind::Date => (4, 0),
            Kind::Int64 => (8, 0),
        };
        let value = self.data.get(skip..skip.checked_add(len)?)?;
        self.data = &self.data[skip + len..];
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use polars::prelude::*;

    use super::*;

    fn write(df: &mut DataFrame, rows_per_group: usize) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        ParquetWriter::new(file.reopen().unwrap())
            .with_row_group_size(Some(rows_per_group))
            .finish(df)
            .unwrap();
        file
    }

    fn dims(d: &[&str]) -> Vec<String> {
        d.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn counts_codes_integers_dates_and_nulls_across_row_groups() {
        // Seven records in row groups of three: the cells are counted by hand.
        let mut df = df!(
            "SEX" => ["F", "M", "F", "F", "M", "F", "M"],
            "REGION" => [Some("Rabat"), None, Some("Fès"), Some("Rabat"), Some("Rabat"), None, None],
            "AGE" => [Some(30i64), Some(-1), None, Some(30), Some(7), Some(30), Some(7)],
            "YEAR" => [2021i32, 2021, 2022, 2021, 2022, 2021, 2021],
        )
        .unwrap();
        let day = Column::new(
            "DAY".into(),
            [19_000i32, 19_001, 19_000, 19_000, 0, 19_000, 0],
        )
        .cast(&DataType::Date)
        .unwrap();
        df.with_column(day).unwrap();
        let file = write(&mut df, 3);
        let cells = finest_cells(file.path(), &dims(&["SEX", "REGION", "AGE"])).unwrap();
        let expected: BTreeMap<Vec<String>, u64> = [
            (["F", "Rabat", "30"], 2),
            (["F", "Fès", "_U"], 1),
            (["F", "_U", "30"], 1),
            (["M", "_U", "-1"], 1),
            (["M", "Rabat", "7"], 1),
            (["M", "_U", "7"], 1),
        ]
        .into_iter()
        .map(|(k, n)| (k.iter().map(|s| s.to_string()).collect(), n))
        .collect();
        assert_eq!(cells, expected);

        let cells = finest_cells(file.path(), &dims(&["DAY", "YEAR"])).unwrap();
        let expected: BTreeMap<Vec<String>, u64> = [
            (["2022-01-08", "2021"], 3), // day 19,000
            (["2022-01-08", "2022"], 1),
            (["2022-01-09", "2021"], 1),
            (["1970-01-01", "2022"], 1),
            (["1970-01-01", "2021"], 1),
        ]
        .into_iter()
        .map(|(k, n)| (k.iter().map(|s| s.to_string()).collect(), n))
        .collect();
        assert_eq!(cells, expected);
    }

    #[test]
    fn leaves_other_types_to_the_general_path_and_names_the_column() {
        let mut df = df!(
            "SEX" => ["F", "M"],
            "FLAG" => [true, false],
            "SHARE" => [0.5f64, 1.0],
        )
        .unwrap();
        let file = write(&mut df, 10);
        for d in ["FLAG", "SHARE"] {
            match finest_cells(file.path(), &dims(&["SEX", d])) {
                Err(Unread::Column { column, .. }) => assert_eq!(column, format!("`{d}`")),
                other => panic!("{d}: {other:?}"),
            }
        }
        assert_eq!(
            finest_cells(Path::new("/nonexistent/file.parquet"), &dims(&["SEX"])),
            Err(Unread::File)
        );
    }
}
