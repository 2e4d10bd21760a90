#!/usr/bin/env python3
"""Recompute every count table of a pipeline with DuckDB's GROUP BY CUBE, from the same harmonized
records, and compare cell by cell with what migstat published (for survey tables: the unweighted
respondent counts `n`; their estimates are checked against R). Also read every table with Hive
partitioning in DuckDB, pyarrow and polars, and check the three agree.

Usage: tests/duckdb_tables_check.py PIPELINE OUT_DIR   (OUT_DIR holds a finished `migstat run`)
Exits 1 on any difference.
"""
import os
import sys
import tomllib

import duckdb
import polars as pl
import pyarrow.dataset as ds


def q(name):
    return '"' + name.replace('"', '""') + '"'


PIPELINE = None


def reference_sql(spec, table, accepted):
    src = spec["sources"][table["source"]]
    person = "raw_" + src.get("person_id", "")  # the delivery's fields are raw_<field> in accepted records
    dims = table["dimensions"]
    where = []
    if "filter" in table:
        values = ", ".join("'" + v.replace("'", "''") + "'" for v in table["filter"]["in"])
        where.append(f"{q(table['filter']['column'])} in ({values})")
    kind = table.get("kind", "count")
    ref_date = str(spec["reference_date"])
    period = spec["reference_period"]
    if isinstance(period, str):
        start, end = f"{period}-01-01", f"{period}-12-31"
    else:
        start, end = str(period["start"]), str(period["end"])
    base = f"select * from read_parquet('{accepted}')"
    if where:
        base += " where " + " and ".join(where)
    if kind == "count" and table["unit"] == "persons":
        base = f"select * from ({base}) qualify row_number() over (partition by {q(person)} order by _file desc, _record desc) = 1"
    elif kind == "stock":
        vf, vt = q("raw_" + table["valid_from"]), q("raw_" + table["valid_to"])
        # No end date: valid from the start on, unless the table says `open_end = "excluded"`.
        open_end = "" if table.get("open_end") == "excluded" else f" or {vt} is null"
        base = (f"select * from ({base}) where {vf} <= date '{ref_date}' and ({vt} >= date '{ref_date}'{open_end}) "
                f"qualify row_number() over (partition by {q(person)} order by {vf} desc, _file desc, _record desc) = 1")
        base = stock_ages(spec, src, dims, base, ref_date)
    elif kind == "flow" and table.get("first") == "eurostat":
        # Eurostat: valid >= 3 months, and every earlier record of the person ended more than
        # 6 months before the start (a record without an end never ends).
        st, en = q("raw_" + table["start"]), q("raw_" + table["end"])
        order = f"order by {st}, _file, _record"
        base = (f"select * from (select *, max(coalesce({en}, date '9999-12-31')) over (partition by {q(person)} "
                f"{order} rows between unbounded preceding and 1 preceding) as _prev_end from ({base})) "
                f"where ({en} is null or {en} >= {st} + interval 3 month - interval 1 day) "
                f"and (_prev_end is null or _prev_end < {st} - interval 6 month)")
        if table.get("period", "reference") == "all":
            base = f"select * from ({base}) qualify row_number() over (partition by {q(person)}, year({st}) {order}) = 1"
        else:
            base = (f"select * from ({base}) where {st} between date '{start}' and date '{end}' "
                    f"qualify row_number() over (partition by {q(person)} {order}) = 1")
    elif kind == "flow":
        st = q("raw_" + table["start"])
        base = (f"select * from ({base}) qualify row_number() over (partition by {q(person)} "
                f"order by {st} asc, _file asc, _record asc) = 1")
        if table.get("period", "reference") != "all":
            base = f"select * from ({base}) where {st} between date '{start}' and date '{end}'"
    cols = ", ".join(f"case when grouping({q(d)}) = 1 then '_T' else {q(d)} end as {q(d)}" for d in dims)
    return f"select {cols}, count(*) as n from ({base}) group by cube({', '.join(q(d) for d in dims)})"


def stock_ages(spec, src, dims, base, ref_date):
    """A source whose age is taken at each record's event (`AGE = { birth_date, at }`): a stock
    restates the age, and its bandings, in completed years on the stock date."""
    harm = src.get("harmonize", {})
    age = next((k for k, d in harm.items() if isinstance(d, dict) and "at" in d and "birth_date" in d), None)
    if age is None:
        return base
    b = q("raw_" + harm[age]["birth_date"])
    r = f"date '{ref_date}'"
    # Completed years: the year difference, less one if the birthday (month, day) is still ahead.
    years = (f"(year({r}) - year({b}) - case when month({r}) < month({b}) or "
             f"(month({r}) = month({b}) and day({r}) < day({b})) then 1 else 0 end)")
    bands_csv = os.path.join(os.path.dirname(PIPELINE), spec["codelists"], "age_bands.csv")
    repl = []
    for d in dims:
        h = harm.get(d, {})
        if d == age:
            repl.append(f"case when {b} is null then {q(d)} else {years} end as {q(d)}")
        elif isinstance(h, dict) and "banding" in h and h.get("from_age", age) == age:
            band = h["banding"].replace("'", "''")
            repl.append(
                f"case when {b} is null then {q(d)} else (select code from read_csv('{bands_csv}', all_varchar = true) "
                f"where banding = '{band}' and min_age <> '' and {years} >= cast(min_age as int) "
                f"and (max_age = '' or max_age is null or {years} <= cast(max_age as int))) end as {q(d)}")
    if not repl:
        return base
    return f"select * replace ({', '.join(repl)}) from ({base})"


def main():
    global PIPELINE
    pipeline, out = sys.argv[1], sys.argv[2]
    PIPELINE = pipeline
    with open(pipeline, "rb") as f:
        spec = tomllib.load(f)
    failures = []
    for tid, table in sorted(spec.get("tables", {}).items()):
        dims = table["dimensions"]
        accepted = os.path.join(out, "restricted", "accepted", table["source"] + ".parquet")
        expected = {tuple(r[:-1]): r[-1] for r in duckdb.execute(reference_sql(spec, table, accepted)).fetchall()}
        if table.get("kind") == "survey_proportion":
            # Shares are published for the categories, not for their denominators (category _T).
            ci = dims.index(table["category"])
            expected = {k: v for k, v in expected.items() if k[ci] != "_T"}
        folder = os.path.join(out, "restricted", "tables", tid)
        glob = os.path.join(folder, "*", "*.parquet")
        cols = ", ".join(q(d) for d in dims)
        got = {tuple(r[:-1]): r[-1] for r in duckdb.execute(
            f"select {cols}, n from read_parquet('{glob}', hive_partitioning = true)").fetchall()}
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        wrong = [(k, got[k], expected[k]) for k in sorted(set(got) & set(expected)) if got[k] != expected[k]][:5]
        if missing or extra or wrong:
            failures.append(f"{tid}: missing {missing}, extra {extra}, wrong (cell, migstat, duckdb) {wrong}")
        # Three readers, Hive partitioning, same rows and the same total.
        d_rows, d_sum, years = duckdb.execute(
            f"select count(*), sum(n), list(distinct ref_year) from read_parquet('{glob}', hive_partitioning = true)").fetchone()
        pa = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
        plf = pl.scan_parquet(glob, hive_partitioning=True).collect()
        if not (d_rows == pa.num_rows == plf.height and d_sum == sum(pa.column("n").to_pylist()) == plf["n"].sum()):
            failures.append(f"{tid}: DuckDB, pyarrow and polars read different tables")
        if "ref_year" not in pa.column_names or "ref_year" not in plf.columns:
            failures.append(f"{tid}: the ref_year partition column is not read back")
        print(f"{tid}: {len(got)} cells, DuckDB CUBE {len(expected)} cells, ref_year {years}: "
              f"{'same' if not (missing or extra or wrong) else 'DIFFERENT'}")
    for f in failures:
        print("MISMATCH", f)
    print(f"duckdb tables check: {'failed' if failures else 'agreed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
