//! The dictionaries of a row group's text columns, built before polars' Parquet writer sees them.
//!
//! Input: one row group about to be written by [`super::ParquetSink`]'s writer thread.
//! Output: the same rows, each text column with few distinct values replaced by a polars `Enum`
//! of exactly its values in the order they first appear, with their indices; every other column
//! as it was.
//!
//! Why: polars' writer dictionary-encodes a text column by estimating its cardinality (a hash of
//! every value) and then casting it to a dictionary (a second hash of every value, compared byte
//! by byte with `memcmp`). Raw code fields (a border post, a sex, a citizenship, the file a
//! record came from) are a few hundred distinct values in a row group of 262,144 rows, and that
//! work was about a tenth of the whole source pass (BENCHMARKS.md, "Raw text columns as
//! dictionaries"). Here a value of up to 12 bytes — nearly every code — is looked up by its
//! 16-byte Arrow view as one integer, a repeat of the previous row costs one comparison, and
//! an `Enum` column goes to the writer's dictionary path, which hashes nothing.
//!
//! What is written is what the writer's own cast would write, but for the pages: the same values
//! in the same dictionary (the writer's cast numbers a column's distinct values in the order
//! they first appear too), the same indices, the same statistics (taken from the dictionary's
//! values, which are exactly the row group's); a column whose distinct values are more than
//! three quarters of its rows stays text, as the writer would leave it (plain). Only the data
//! pages can be fewer: the writer cuts them by the estimated size of the indices, which are
//! 4-byte integers after its own cast and 1 or 2 bytes here. The file's Arrow schema is the
//! sink's, fixed when it was created: every reader sees text. The row group and the order of
//! its rows alone decide the dictionary, so the same rows give the same bytes.

use polars::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{PolarsContext, Result};

/// Rows looked at before deciding that a column's values are too many to be worth a
/// dictionary: past this, a column with more than half of them distinct (an identifier) is
/// left to the writer, which writes it plain.
const PROBE_ROWS: usize = 4096;

/// `df` with each text column of few distinct values as a dictionary (see the module doc).
pub(super) fn with_dictionaries(mut df: DataFrame) -> Result<DataFrame> {
    let names: Vec<PlSmallStr> = df
        .columns()
        .iter()
        .filter(|c| c.dtype() == &DataType::String)
        .map(|c| c.name().clone())
        .collect();
    for n in names {
        let coded = {
            let ca = df
                .column(&n)
                .and_then(|c| c.str())
                .ctx(|| format!("column {n} as text"))?;
            dictionary(ca).ctx(|| format!("column {n} as a dictionary"))?
        };
        if let Some(c) = coded {
            df.with_column(c)
                .ctx(|| format!("column {n} as a dictionary"))?;
        }
    }
    Ok(df)
}

/// `ca` as an `Enum` of its values in first-seen order, or `None` when that would not be a
/// dictionary the writer keeps (more distinct values than three quarters of the rows, or more
/// than half of the first [`PROBE_ROWS`]), or `ca` is all null or in several chunks.
fn dictionary(ca: &StringChunked) -> PolarsResult<Option<Column>> {
    if ca.chunks().len() != 1 || ca.null_count() == ca.len() {
        return Ok(None);
    }
    let Some(arr) = ca.downcast_iter().next() else {
        return Ok(None);
    };
    let n = arr.len();
    // The writer's own rule (`polars-parquet`, `encode_as_dictionary_optional`): a column with
    // more distinct values than 3/4 of its rows is written plain.
    let most = n * 3 / 4;
    let views = arr.views();
    let validity = ca.rechunk_validity();
    let mut short: FxHashMap<u128, u32> = FxHashMap::default();
    let mut long: FxHashMap<&[u8], u32> = FxHashMap::default();
    let mut values: Vec<&str> = Vec::new();
    let mut keys: Vec<u32> = Vec::with_capacity(n);
    let mut previous: Option<(u128, u32)> = None;
    for (i, view) in views.iter().enumerate() {
        if validity.as_ref().is_some_and(|v| !v.get_bit(i)) {
            keys.push(0);
            continue;
        }
        let raw = view.as_u128();
        // The same view as the row before: the same bytes (inline, or the same place in the
        // same buffer).
        if let Some((p, k)) = previous
            && p == raw
        {
            keys.push(k);
            continue;
        }
        let next = values.len() as u32;
        let k = if view.length <= 12 {
            // Length and the value's bytes; whatever follows them in the view is masked off.
            let bits = 32 + 8 * view.length;
            let key = if bits >= 128 {
                raw
            } else {
                raw & ((1u128 << bits) - 1)
            };
            *short.entry(key).or_insert(next)
        } else {
            *long.entry(arr.value(i).as_bytes()).or_insert(next)
        };
        if k == next {
            values.push(arr.value(i));
            if values.len() > most || (i >= PROBE_ROWS && values.len() > PROBE_ROWS / 2) {
                return Ok(None);
            }
        }
        previous = Some((raw, k));
        keys.push(k);
    }
    let dtype = DataType::from_frozen_categories(FrozenCategories::new(values.iter().copied())?);
    let name = ca.name().clone();
    macro_rules! build {
        ($chunked:ty, $native:ty, $cat:ty) => {{
            let codes: Vec<$native> = keys.iter().map(|&k| k as $native).collect();
            let ca = <$chunked>::from_vec_validity(name, codes, validity);
            CategoricalChunked::<$cat>::from_cats_and_dtype(ca, dtype)
                .into_series()
                .into_column()
        }};
    }
    Ok(Some(match dtype.cat_physical()? {
        CategoricalPhysical::U8 => build!(UInt8Chunked, u8, Categorical8Type),
        CategoricalPhysical::U16 => build!(UInt16Chunked, u16, Categorical16Type),
        CategoricalPhysical::U32 => build!(UInt32Chunked, u32, Categorical32Type),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(c: &Column) -> Vec<Option<String>> {
        let c = c.cast(&DataType::String).unwrap();
        c.str()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    fn categories(c: &Column) -> Vec<String> {
        match c.dtype() {
            DataType::Enum(cats, _) => cats
                .categories()
                .values_iter()
                .map(str::to_string)
                .collect(),
            other => panic!("not an Enum: {other:?}"),
        }
    }

    #[test]
    fn codes_become_a_dictionary_in_first_seen_order_and_read_back_the_same() {
        let long = "a value longer than twelve bytes";
        let v: Vec<Option<&str>> = [
            Some("OUT"),
            Some("IN"),
            None,
            Some("IN"),
            Some(long),
            Some(""),
            Some(long),
            Some("OUT"),
            Some("twelve bytes"),
            Some("twelve bytez"),
            Some("IN"),
            Some(""),
        ]
        .into_iter()
        .cycle()
        .take(1200)
        .collect();
        let ca = StringChunked::new("direction".into(), &v);
        let c = dictionary(&ca).unwrap().expect("a dictionary");
        assert_eq!(
            categories(&c),
            ["OUT", "IN", long, "", "twelve bytes", "twelve bytez"]
        );
        let want: Vec<Option<String>> = v.iter().map(|s| s.map(str::to_string)).collect();
        assert_eq!(text(&c), want);
        assert_eq!(c.null_count(), 100);
    }

    #[test]
    fn identifiers_stay_text() {
        // All distinct: over three quarters of the rows.
        let ids: Vec<String> = (0..200).map(|i| format!("E{i:012}")).collect();
        let ca = StringChunked::new("id".into(), &ids);
        assert!(dictionary(&ca).unwrap().is_none());
        // Half the values repeat, but the first 4096 rows are mostly distinct.
        let ids: Vec<String> = (0..10_000).map(|i| format!("T{}", i % 5000)).collect();
        let ca = StringChunked::new("id".into(), &ids);
        assert!(dictionary(&ca).unwrap().is_none());
        // All null: nothing to encode.
        let ca = StringChunked::full_null("x".into(), 10);
        assert!(dictionary(&ca).unwrap().is_none());
    }

    #[test]
    fn a_column_sliced_out_of_another_makes_the_same_codes() {
        // The same short values in two arrays built differently (one sliced out of a longer
        // column: other views, other offsets) make the same codes.
        let a = StringChunked::new("a".into(), &["MAR", "FRA", "MAR", "ESP", "FRA", "MAR"]);
        let b = StringChunked::new(
            "a".into(),
            &["x", "MAR", "FRA", "MAR", "ESP", "FRA", "MAR", "y"],
        )
        .slice(1, 6)
        .rechunk()
        .into_owned();
        let ca = dictionary(&a).unwrap().unwrap();
        let cb = dictionary(&b).unwrap().unwrap();
        assert_eq!(categories(&ca), ["MAR", "FRA", "ESP"]);
        assert_eq!(categories(&cb), ["MAR", "FRA", "ESP"]);
        assert_eq!(text(&ca), text(&cb));
    }

    #[test]
    fn a_sink_writes_codes_as_dictionaries_and_reads_back_the_same_text() {
        let n = 3000;
        let codes: Vec<Option<&str>> = (0..n)
            .map(|i| match i % 7 {
                0 => None,
                1 | 4 => Some("MAR"),
                2 => Some("a post with a long name"),
                _ => Some("ESP"),
            })
            .collect();
        let ids: Vec<String> = (0..n).map(|i| format!("E{i:012}")).collect();
        let ints: Vec<i64> = (0..n as i64).collect();
        let df = DataFrame::new(
            n,
            vec![
                Column::new("code".into(), &codes),
                Column::new("id".into(), &ids),
                Column::new("n".into(), &ints),
            ],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let mut sink = crate::export::ParquetSink::create(&path, df.schema(), &[]).unwrap();
        sink.write(df.clone()).unwrap();
        sink.finish(dir.path()).unwrap();

        let back = ParquetReader::new(std::fs::File::open(&path).unwrap())
            .finish()
            .unwrap();
        assert_eq!(back.schema(), df.schema());
        assert!(back.equals_missing(&df));
        let meta =
            polars_parquet::parquet::read::read_metadata(&mut std::fs::File::open(&path).unwrap())
                .unwrap();
        let columns = meta.row_groups[0].parquet_columns();
        let dictionary = |i: usize| columns[i].dictionary_page_offset().is_some();
        assert!(dictionary(0), "the code column has a dictionary");
        assert!(!dictionary(1), "the identifiers are written plain");
    }
}
