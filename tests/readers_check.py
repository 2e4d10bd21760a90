"""Published counts are integers a reader can subtract: in every Parquet file of a release no
column is an unsigned integer, and in DuckDB, polars and pandas the difference of two published
counts (the smaller minus the larger) is the right negative number — not an overflow error or
18446744073709551571, as unsigned columns gave.

Usage: readers_check.py PIPELINE RELEASE   (RELEASE: an `out/current` directory)
"""
import glob
import os
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq

release = sys.argv[2]
files = sorted(glob.glob(os.path.join(release, "**", "*.parquet"), recursive=True))
assert files, f"no Parquet file under {release}"
unsigned = []
for f in files:
    for field in pq.read_schema(f):
        if str(field.type).startswith("uint"):
            unsigned.append(f"{os.path.relpath(f, release)}: {field.name} {field.type}")
assert not unsigned, "unsigned integer columns:\n" + "\n".join(unsigned)

checked = 0
for f in files:
    if "/public/tables/" not in f:
        continue
    t = pq.read_table(f)
    if "value" not in t.column_names:
        continue
    values = sorted({v for v in t.column("value").to_pylist() if v is not None})
    if len(values) < 2:
        continue
    small, large = values[0], values[-1]
    want = small - large  # Python integers: exact
    assert want < 0
    got_duck = duckdb.execute(
        f"select min(value) filter (where value = {small}) - max(value) filter (where value = {large}) "
        f"from read_parquet('{f}')"
    ).fetchone()[0]
    df = pl.read_parquet(f)
    got_polars = (
        df.filter(pl.col("value") == small)["value"][0] - df.filter(pl.col("value") == large)["value"][0]
    )
    pdf = pd.read_parquet(f)
    got_pandas = pdf.loc[pdf["value"] == small, "value"].iloc[0] - pdf.loc[pdf["value"] == large, "value"].iloc[0]
    for reader, got in (("duckdb", got_duck), ("polars", got_polars), ("pandas", got_pandas)):
        assert int(got) == want, f"{os.path.relpath(f, release)}: {reader} gives {got} for {small} - {large}"
    checked += 1
assert checked > 0, "no public count table with two published values"
print(f"readers: {len(files)} files signed, {checked} tables subtract in duckdb, polars and pandas")

# The period column has one type in every reader, read as the README reads a table's folder
# (DuckDB and polars with their Hive options on, pyarrow's dataset with Hive partitioning,
# pandas on the folder): ref_year a 64-bit integer, ref_date a date, quarters and months text.
import pyarrow.dataset as ds

WANT = {"ref_year": ("BIGINT", "int64", pl.Int64, "int64"), "ref_date": ("DATE", "date32[day]", pl.Date, None),
        "ref_quarter": ("VARCHAR", "string", pl.String, None), "ref_month": ("VARCHAR", "string", pl.String, None)}
periods = 0
for folder in sorted(glob.glob(os.path.join(release, "public", "tables", "*"))):
    glob_ = os.path.join(folder, "*", "*.parquet")
    arrow = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    key = next(k for k in WANT if k in arrow.column_names)
    duck = duckdb.execute(f"select typeof({key}) from read_parquet('{glob_}', hive_partitioning = true) limit 1").fetchone()[0]
    polars_t = pl.scan_parquet(glob_, hive_partitioning=True).collect_schema()[key]
    pandas_t = str(pd.read_parquet(folder)[key].dtype)
    want = WANT[key]
    got = (duck, str(arrow.schema.field(key).type), polars_t, pandas_t)
    ok = got[0] == want[0] and got[1] in (want[1], "large_string", "string_view") and got[2] == want[2] \
        and (want[3] is None or got[3] == want[3]) and "category" not in got[3]
    assert ok, f"{os.path.basename(folder)}: {key} read as {got} (DuckDB, pyarrow, polars, pandas), expected {want}"
    periods += 1
print(f"readers check: the period column has one type in 4 readers for {periods} tables")
