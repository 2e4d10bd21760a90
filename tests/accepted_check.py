#!/usr/bin/env python3
"""Check a release's accepted records (restricted/accepted/<source>/delivery=<k>/part-0.parquet)
as researchers read them, in pyarrow, polars, pandas and DuckDB.

Usage: tests/accepted_check.py PIPELINE RELEASE   (a release directory, or an output directory)

migstat writes a derived code column whose codes the spec fixes (a crosswalk's or code list's
codes, a banding, a code list attribute) from its codes' indices, and declares it as text:

- in every reader, every derived column but the ages is text (no dictionary, category or
  enum type), and every raw column has the type it had before;
- the values are the codes, recomputed here from the code lists alone: each AGE_GROUP is the
  band of AGE in its banding (schemas/codelists/age_bands.csv; `_U` for an unknown age), each
  region looked up in schemas/codelists/countries.csv (`NAT` for the national country, `_Z`
  where the attribute is empty, `_U` for an unknown or missing country);
- the four readers read the same rows.
Prints `accepted ok` and exits 0, else names the problems and exits 1.
"""
import csv
import glob
import os
import sys
import tomllib

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

pipeline, out = sys.argv[1], sys.argv[2]
rel = out if os.path.isfile(os.path.join(out, "manifest.json")) else os.path.join(out, "current")
rel = os.path.realpath(rel)
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = tomllib.load(open(pipeline, "rb"))
problems = []


def codelist(name):
    with open(os.path.join(repo, "schemas", "codelists", name), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


bands = {}
for r in codelist("age_bands.csv"):
    if r["min_age"] != "":
        hi = int(r["max_age"]) if r["max_age"] != "" else None
        bands.setdefault(r["banding"], []).append((int(r["min_age"]), hi, r["code"]))
countries = {r["iso3"]: r for r in codelist("countries.csv")}


def band(banding, age):
    if age is None:
        return "_U"
    for lo, hi, code in bands[banding]:
        if age >= lo and (hi is None or age <= hi):
            return code
    return "_U"


def lookup(code, column, national):
    if code is None or code == "_U":
        return "_U"
    if national is not None and code == national:
        return "NAT"
    row = countries.get(code)
    if row is None:
        return "_U"
    return row[column] or "_Z"


text = {pa.string(), pa.large_string(), pa.string_view()}
checked = {"bands": 0, "lookups": 0, "files": 0}
for sid, source in sorted(spec.get("sources", {}).items()):
    harmonize = source.get("harmonize", {})
    derived = [n for n, d in harmonize.items() if "age" not in d and "birth_date" not in d and "birth_year" not in d]
    parts = sorted(glob.glob(os.path.join(rel, "restricted", "accepted", sid, "*", "*.parquet")))
    for part in parts:
        name = os.path.relpath(part, rel)
        checked["files"] += 1
        table = pq.read_table(part)
        for n in derived:
            t = table.schema.field(n).type
            if t not in text:
                problems.append(f"{name}: pyarrow reads {n} as {t}, not text")
        frame = pl.read_parquet(part)
        for n in derived:
            if frame.schema[n] != pl.String:
                problems.append(f"{name}: polars reads {n} as {frame.schema[n]}, not String")
        pandas = table.to_pandas()
        for n in derived:
            if pandas[n].dtype.name not in ("object", "string", "str"):
                problems.append(f"{name}: pandas reads {n} as {pandas[n].dtype}")
        types = {r[0]: r[1] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{part}')").fetchall()}
        for n in derived:
            if types.get(n) != "VARCHAR":
                problems.append(f"{name}: DuckDB reads {n} as {types.get(n)}, not VARCHAR")
        # The same rows in every reader (in record order).
        cols = ["_record"] + derived
        by_record = lambda rows: sorted(rows, key=lambda r: r["_record"])
        rows_pa = by_record(table.select(cols).to_pylist())
        rows_pl = by_record(frame.select(cols).to_dicts())
        rows_db = [dict(zip(cols, r)) for r in duckdb.sql(
            "SELECT " + ", ".join(f'"{c}"' for c in cols) + f" FROM read_parquet('{part}') ORDER BY _record").fetchall()]
        rows_pd = by_record(pandas[cols].to_dict("records"))
        for label, rows in (("polars", rows_pl), ("DuckDB", rows_db), ("pandas", rows_pd)):
            if rows != rows_pa:
                problems.append(f"{name}: {label} reads other rows than pyarrow")
        # The codes, recomputed from the code lists.
        for n, d in harmonize.items():
            if "banding" in d:
                ages = table.column("AGE").to_pylist()
                got = table.column(n).to_pylist()
                for i, (a, g) in enumerate(zip(ages, got)):
                    want = band(d["banding"], a)
                    if g != want:
                        problems.append(f"{name}: row {i} {n} {g!r}, age {a} is in band {want!r}")
                        break
                checked["bands"] += len(got)
            if "lookup" in d and d.get("codelist") == "countries":
                codes = table.column(d["lookup"]).to_pylist()
                got = table.column(n).to_pylist()
                for i, (c, g) in enumerate(zip(codes, got)):
                    want = lookup(c, d["column"], d.get("national"))
                    if g != want:
                        problems.append(f"{name}: row {i} {n} {g!r}, {d['lookup']} {c!r} gives {want!r}")
                        break
                checked["lookups"] += len(got)

if checked["files"] == 0:
    problems.append(f"no accepted part under {rel}")
if checked["bands"] == 0 or checked["lookups"] == 0:
    problems.append(f"nothing to recompute: {checked}")
if problems:
    print("\n".join(problems[:20]))
    sys.exit(1)
print(f"accepted ok: {checked['files']} parts, {checked['bands']} age bands and {checked['lookups']} region lookups recomputed, read alike by pyarrow, polars, pandas and DuckDB")
