"""`migstat tabulate` against DuckDB's GROUP BY CUBE on Parquet files as many writers lay them out.

Usage: tabulate_check.py MIGSTAT_BINARY WORKDIR

The same records (strings with nulls and non-ASCII codes, a literal `_U`, a required column,
signed integers with nulls, a high-cardinality code, a date and a boolean) are written by
pyarrow (data pages v1 and v2, many small pages, several row groups, no dictionary, a
dictionary that overflows into plain pages, delta encodings, snappy/gzip/zstd/none, a
dictionary-typed column), by DuckDB, by polars and by pandas (categoricals). For each file and
several sets of columns, migstat's cube must equal DuckDB's `GROUP BY CUBE` cell for cell: a null
code counted as `_U`, a margin as `_T`. Files migstat counts on dictionary codes and files it
leaves to its general path must agree alike. Prints "tabulate agrees" at the end.
"""
import csv
import datetime as dt
import io
import os
import random
import subprocess
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

binary, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
rng = random.Random(20261205)
N = 23_457

regions = ["Rabat-Salé-Kénitra", "Casablanca-Settat", "Fès-Meknès", "Souss-Massa", "الداخلة", "_U", ""]
rows = {
    "REGION": [rng.choice(regions) if rng.random() > 0.07 else None for _ in range(N)],
    "SEX": [rng.choice(["F", "M", "_U"]) for _ in range(N)],
    "AGE": [rng.randint(-3, 99) if rng.random() > 0.05 else None for _ in range(N)],
    "YEAR": [rng.choice([2021, 2022, 2023, 10**12]) for _ in range(N)],
    "PERSON": [f"P{rng.randint(0, 4000):05d}" for _ in range(N)],
    "DAY": [dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 5)) for _ in range(N)],
    "FLAG": [rng.random() > 0.5 if rng.random() > 0.1 else None for _ in range(N)],
}
schema = pa.schema([
    pa.field("REGION", pa.string()),
    pa.field("SEX", pa.string(), nullable=False),
    pa.field("AGE", pa.int32()),
    pa.field("YEAR", pa.int64(), nullable=False),
    pa.field("PERSON", pa.string()),
    pa.field("DAY", pa.date32()),
    pa.field("FLAG", pa.bool_()),
])
table = pa.Table.from_pydict(rows, schema=schema)

files = {}
def arrow(name, t=table, **kw):
    path = os.path.join(work, name + ".parquet")
    pq.write_table(t, path, **kw)
    files[name] = path

arrow("arrow_default")
arrow("arrow_v2_zstd_small_pages", data_page_version="2.0", compression="zstd",
      data_page_size=512, row_group_size=5_000)
arrow("arrow_plain_gzip", use_dictionary=False, compression="gzip", row_group_size=9_999)
arrow("arrow_dictionary_overflow", dictionary_pagesize_limit=64, data_page_size=256,
      compression="none")
arrow("arrow_delta", use_dictionary=False, column_encoding={
    "REGION": "DELTA_BYTE_ARRAY", "SEX": "DELTA_LENGTH_BYTE_ARRAY", "AGE": "DELTA_BINARY_PACKED",
    "YEAR": "DELTA_BINARY_PACKED", "PERSON": "DELTA_BYTE_ARRAY"})
arrow("arrow_dictionary_type", t=table.set_column(
    0, "REGION", pa.compute.dictionary_encode(table.column("REGION"))),
    data_page_version="2.0", row_group_size=3_000)
arrow("arrow_one_row_group_per_row", t=table.slice(0, 40), row_group_size=1)
arrow("arrow_empty", t=table.slice(0, 0))

con = duckdb.connect()
con.register("t", table)
path = os.path.join(work, "duckdb.parquet")
con.execute(f"COPY t TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 4096)")
files["duckdb"] = path

path = os.path.join(work, "polars.parquet")
pl.from_arrow(table).write_parquet(path, row_group_size=6_000)
files["polars"] = path

path = os.path.join(work, "pandas_categorical.parquet")
p = table.to_pandas()
p["REGION"] = p["REGION"].astype("category")
p["SEX"] = p["SEX"].astype("category")
p.to_parquet(path, index=False)
files["pandas_categorical"] = path

by_sets = [
    ["REGION", "SEX"],
    ["SEX", "AGE", "REGION"],
    ["YEAR", "AGE"],
    ["PERSON", "REGION", "AGE"],
    ["DAY", "FLAG", "SEX"],
    ["REGION"],
]

def duck_cube(path, dims):
    """DuckDB's cube with migstat's codes: `_T` where a dimension is rolled up, `_U` for null."""
    sel = ", ".join(
        f"CASE WHEN GROUPING({d}) = 1 THEN '_T' WHEN {d} IS NULL THEN '_U' "
        f"ELSE CAST({d} AS VARCHAR) END" for d in dims)
    q = (f"SELECT {sel}, count(*) FROM read_parquet('{path}') "
         f"GROUP BY CUBE ({', '.join(dims)})")
    got = {}
    for r in con.execute(q).fetchall():
        key = tuple(r[:-1])
        got[key] = got.get(key, 0) + r[-1]  # a literal "_U" and a null share one cell
    return got

def migstat_cube(path, dims, fast):
    """migstat's cube; `fast`: whether it must count on dictionary codes (its log says which)."""
    o = subprocess.run([binary, "-v", "tabulate", path, "--by", ",".join(dims)],
                       capture_output=True, text=True)
    if o.returncode != 0:
        sys.exit(f"migstat tabulate {path} --by {dims} failed:\n{o.stderr}")
    used = "dictionary codes" in o.stderr
    if used != fast or ("decoded values" in o.stderr) == fast:
        sys.exit(f"{path} {dims}: expected the {'dictionary' if fast else 'general'} path:\n{o.stderr}")
    reader = csv.reader(io.StringIO(o.stdout))
    header = next(reader)
    assert header == dims + ["n"], header
    got = {}
    for r in reader:
        key = tuple(r[:-1])
        if key in got:
            sys.exit(f"{path} {dims}: cell {key} twice")
        got[key] = int(r[-1])
    return got

checked = 0
for name, path in files.items():
    for dims in by_sets:
        # Booleans, floats (pandas' integers with a null) and delta encodings are left to the
        # general path; the rest is counted on dictionary codes.
        general = {"FLAG"} | ({"AGE"} if name == "pandas_categorical" else set())
        fast = not general & set(dims) and name != "arrow_delta"
        ours = migstat_cube(path, dims, fast)
        theirs = duck_cube(path, dims)
        if name == "arrow_empty":
            theirs = {k: v for k, v in theirs.items() if v}
            ours = {k: v for k, v in ours.items() if v}
        if ours != theirs:
            only_ours = {k: v for k, v in ours.items() if theirs.get(k) != v}
            only_theirs = {k: v for k, v in theirs.items() if ours.get(k) != v}
            sys.exit(f"{name} {dims}: cubes differ\nmigstat: {sorted(only_ours.items())[:10]}\n"
                     f"duckdb: {sorted(only_theirs.items())[:10]}")
        checked += 1
print(f"tabulate agrees: {checked} cubes on {len(files)} files")

# Damaged files: a flipped byte in a page (not the footer) must give a cube or a clean error,
# never a crash (exit 101 is a Rust panic, negative a signal).
src = open(files["arrow_v2_zstd_small_pages"], "rb").read()
footer = int.from_bytes(src[-8:-4], "little") + 8
damaged = os.path.join(work, "damaged.parquet")
for k in range(120):
    pos = rng.randrange(4, len(src) - footer)
    data = bytearray(src)
    data[pos] ^= 1 << rng.randrange(8)
    open(damaged, "wb").write(data)
    o = subprocess.run([binary, "-q", "tabulate", damaged, "--by", "REGION,AGE,SEX"],
                       capture_output=True, text=True)
    if o.returncode == 101 or o.returncode < 0:
        sys.exit(f"a flipped bit at byte {pos} crashed migstat tabulate:\n{o.stderr[-2000:]}")
print("damaged files: no crash")
