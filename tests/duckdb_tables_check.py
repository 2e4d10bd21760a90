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


def periods_of(spec, table):
    """The table's reference periods, resolved as the README says (the table's `period`, else its
    source's, else the pipeline's), written here independently of migstat: a list of
    (TIME_PERIOD label, partition folder, start, end) and the event date field (or None)."""
    import calendar
    import datetime as dt
    src = spec["sources"][table["source"]]
    kind = table.get("kind", "count")
    p = table.get("period", src.get("period"))
    stock = kind == "stock"

    def year(y):
        return (str(y), f"{y}", dt.date(y, 1, 1), dt.date(y, 12, 31))

    def quarter(y, n):
        end_m = 3 * n
        return (f"{y}-Q{n}", f"{y}-Q{n}", dt.date(y, end_m - 2, 1),
                dt.date(y, end_m, calendar.monthrange(y, end_m)[1]))

    def month(y, m):
        return (f"{y}-{m:02d}", f"{y}-{m:02d}", dt.date(y, m, 1),
                dt.date(y, m, calendar.monthrange(y, m)[1]))

    def parse(label):
        label = str(label)
        if "-Q" in label:
            y, n = label.split("-Q")
            return ("Q", int(y), int(n))
        if "-" in label:
            y, m = label.split("-")
            return ("M", int(y), int(m))
        return ("A", int(label), 1)

    def span(s_, e_):
        """One period from start to end: a calendar year, else a range (start/PnY or PnD)."""
        whole = (s_.month, s_.day) == (1, 1) and (e_.month, e_.day) == (12, 31)
        if whole and s_.year == e_.year:
            return [year(s_.year)], "A"
        label = f"{s_}/P{e_.year - s_.year + 1}Y" if whole else f"{s_}/P{(e_ - s_).days + 1}D"
        return [(label, f"{s_.year}", s_, e_)], "_O"

    date = None
    if p is None:
        if stock:
            d = spec["reference_date"]
            return [(str(d), f"{d}", d, d)], None, "A" if (d.month, d.day) == (12, 31) else "_O"
        rp = spec["reference_period"]
        if isinstance(rp, str):
            lst, freq = [year(int(rp))], "A"
        else:
            s_, e_ = rp["start"], rp["end"]
            lst, freq = span(s_, e_)
    elif isinstance(p, str):
        f_, y, n = parse(p)
        lst = [{"A": lambda: year(y), "Q": lambda: quarter(y, n), "M": lambda: month(y, n)}[f_]()]
        freq = f_
    elif "start" in p:
        lst, freq = span(p["start"], p["end"])
        date = p.get("date")
    else:
        every = p["every"]
        f_, y0, n0 = parse(p["from"])
        _, y1, n1 = parse(p["to"])
        lst = []
        y, n = y0, n0
        while (y, n) <= (y1, n1):
            lst.append({"year": lambda: year(y), "quarter": lambda: quarter(y, n), "month": lambda: month(y, n)}[every]())
            if every == "year":
                y += 1
            else:
                n += 1
                if n > (4 if every == "quarter" else 12):
                    y, n = y + 1, 1
        freq = {"year": "A", "quarter": "Q", "month": "M"}[every]
        date = p.get("date")
    if stock:
        lst = [(str(e), f"{e}", e, e) for (_, _, _, e) in lst]
        date = None
    elif kind == "flow":
        date = table["start"]
    elif kind == "migration":
        date = table["crossing_date"]
    elif kind.startswith("survey"):
        date = None
    return lst, date, freq


def reference_sql(spec, table, accepted, period):
    """DuckDB's GROUP BY CUBE of one period of the table."""
    src = spec["sources"][table["source"]]
    person = "raw_" + src.get("person_id", "")  # the delivery's fields are raw_<field> in accepted records
    dims = table["dimensions"]
    _, date = periods_of(spec, table)[:2]
    label, _, start, end = period
    where = []
    if "filter" in table and table.get("kind") != "stock":
        values = ", ".join("'" + v.replace("'", "''") + "'" for v in table["filter"]["in"])
        where.append(f"{q(table['filter']['column'])} in ({values})")
    kind = table.get("kind", "count")
    in_period = lambda col: f"{col} between date '{start}' and date '{end}'"
    base = f"select * from read_parquet('{accepted}')"
    if where:
        base += " where " + " and ".join(where)
    if kind == "count":
        if date:
            base = f"select * from ({base}) where {in_period(q('raw_' + date))}"
        if table["unit"] == "persons":
            base = f"select * from ({base}) qualify row_number() over (partition by {q(person)} order by _file desc, _record desc) = 1"
    elif kind == "stock":
        ref_date = str(end)
        vf = q("raw_" + table["valid_from"])
        if "valid_to" in table:
            vt = q("raw_" + table["valid_to"])
            # No end date: valid from the start on, unless the table says `open_end = "excluded"`.
            open_end = "" if table.get("open_end") == "excluded" else f" or {vt} is null"
            until = f" and ({vt} >= date '{ref_date}'{open_end})"
        else:
            until = ""  # no end date field: every record open-ended
        base = (f"select * from ({base}) where {vf} <= date '{ref_date}'{until} "
                f"qualify row_number() over (partition by {q(person)} order by {vf} desc, _file desc, _record desc) = 1")
        base = stock_ages(spec, src, dims, base, ref_date)
        base = stock_statuses(src, dims + ([table["filter"]["column"]] if "filter" in table else []), base, ref_date)
        if "filter" in table:
            values = ", ".join("'" + v.replace("'", "''") + "'" for v in table["filter"]["in"])
            base = f"select * from ({base}) where {q(table['filter']['column'])} in ({values})"
    elif kind == "flow" and table.get("first") == "eurostat":
        # Eurostat: valid >= 3 months, and every earlier record of the person ended more than
        # 6 months before the start (a record without an end never ends); once per period.
        st, en = q("raw_" + table["start"]), q("raw_" + table["end"])
        order = f"order by {st}, _file, _record"
        base = (f"select * from (select *, max(coalesce({en}, date '9999-12-31')) over (partition by {q(person)} "
                f"{order} rows between unbounded preceding and 1 preceding) as _prev_end from ({base})) "
                f"where ({en} is null or {en} >= {st} + interval 3 month - interval 1 day) "
                f"and (_prev_end is null or _prev_end < {st} - interval 6 month)")
        base = (f"select * from ({base}) where {in_period(st)} "
                f"qualify row_number() over (partition by {q(person)} {order}) = 1")
    elif kind == "flow":
        st = q("raw_" + table["start"])
        base = (f"select * from ({base}) qualify row_number() over (partition by {q(person)} "
                f"order by {st} asc, _file asc, _record asc) = 1")
        base = f"select * from ({base}) where {in_period(st)}"
    elif kind == "migration":
        outcomes = migration_sql(spec, table, accepted)
        flow = "immigration" if table["flow"] == "immigration" else "emigration"
        # The filter picks among the migrations (every crossing makes the history), then
        # each person once per period.
        base = (f"select * from ({outcomes}) where " + " and ".join([f"_outcome = '{flow}'", in_period('_d')] + where)
                + " qualify row_number() over (partition by _p order by _rn) = 1")
    cols = ", ".join(f"case when grouping({q(d)}) = 1 then '_T' else {q(d)} end as {q(d)}" for d in dims)
    return f"select {cols}, count(*) as n from ({base}) group by cube({', '.join(q(d) for d in dims)})"


def migration_sql(spec, table, accepted):
    """Every usable crossing of the table's source with its outcome under the residence rule
    (`immigration`, `emigration`, `none`, `undetermined`), written from the README's definition:
    a crossing is long-term when the person then stays on its side of the border 365 days without
    a crossing back (12_months) or 365 days within the next 16 months (12_of_16), judged on the
    crossings up to observed_to; residence follows the long-term crossings (first crossing a
    departure: resident before it); a migration is a long-term crossing that changes residence."""
    src = spec["sources"][table["source"]]
    person = q("raw_" + src["person_id"])
    d = q("raw_" + table["crossing_date"])
    direc = q(table["direction"])
    arr = table.get("arrival", "IN").replace("'", "''")
    dep = table.get("departure", "OUT").replace("'", "''")
    obs = table.get("observed_to", spec["reference_date"])
    obs_end = f"(date '{obs}' + 1)"
    rule = table.get("rule", "12_of_16")
    crossings = (f"select *, {person} as _p, {d} as _d, ({direc} = '{arr}') as _arr, "
                 f"row_number() over (partition by {person} order by {d}, _file, _record) as _rn "
                 f"from read_parquet('{accepted}') where {d} is not null and {d} <= date '{obs}' "
                 f"and {direc} in ('{arr}', '{dep}')")
    # Each crossing's segment: from it to the person's next crossing (none: open).
    segs = f"select *, lead(_d) over (partition by _p order by _rn) as _next from ({crossings})"
    if rule == "12_months":
        lt = (f"select a.*, (select min(b._d) from ({segs}) b where b._p = a._p and b._rn > a._rn and b._arr <> a._arr) as _back "
              f"from ({segs}) a")
        lt = (f"select *, case when coalesce(_back, {obs_end}) - _d >= 365 then 1 "
              f"when _back is not null then 0 else null end as _lt from ({lt})")
    else:
        win = (f"select a.*, cast(a._d + interval 16 month as date) as _wend, "
               f"least(cast(a._d + interval 16 month as date), {obs_end}) as _seen from ({segs}) a")
        days = (f"select w.*, (select coalesce(sum(greatest(0, least(coalesce(b._next, w._seen), w._seen) - least(b._d, w._seen))), 0) "
                f"from ({segs}) b where b._p = w._p and b._rn >= w._rn and b._arr = w._arr) as _days from ({win}) w")
        lt = (f"select *, case when _days >= 365 then 1 when _wend - _seen <= 0 or _days + (_wend - _seen) < 365 then 0 "
              f"else null end as _lt from ({days})")
    if table.get("duration"):
        # The stay (or absence) from the crossing until the person crosses back, in completed
        # calendar months (the largest m with crossing date + m months <= the day back; still
        # ongoing: to the day after observed_to), banded; ongoing and under 36 months: _U.
        back = (f"(select min(b._d) from ({segs}) b where b._p = x._p and b._rn > x._rn and b._arr <> x._arr)")
        lt = f"select x.*, {back} as _back2 from ({lt}) x"
        upto = f"coalesce(_back2, {obs_end})"
        m0 = f"((year({upto}) - year(_d)) * 12 + month({upto}) - month(_d) - 1)"
        m = (f"(case when cast(_d + to_months({m0} + 2) as date) <= {upto} then {m0} + 2 "
             f"when cast(_d + to_months({m0} + 1) as date) <= {upto} then {m0} + 1 else {m0} end)")
        lt = (f"select *, case when {m} >= 36 then 'M_GE36' when _back2 is null then '_U' "
              f"when {m} < 12 then 'M_LT12' when {m} < 24 then 'M12T23' else 'M24T35' end as {q(table['duration'])} from ({lt})")
    # Residence before each crossing (1 resident, 0 not, -1 not known yet), crossing by crossing.
    return f"""
with recursive c as ({lt}),
s(_p, _rn, _res) as (
  select _p, _rn, case when _arr then 0 else 1 end from c where _rn = 1
  union all
  select c._p, c._rn,
    case when prev._lt = 1 then (case when prev._arr then 1 else 0 end)
         when prev._lt = 0 then s._res
         when s._res >= 0 and (prev._arr = (s._res = 1)) then s._res
         else -1 end
  from s join c prev on prev._p = s._p and prev._rn = s._rn join c on c._p = s._p and c._rn = s._rn + 1
)
select c.*, case
    when c._lt = 0 then 'none'
    when c._lt = 1 and s._res >= 0 and c._arr <> (s._res = 1) then (case when c._arr then 'immigration' else 'emigration' end)
    when c._lt = 1 and s._res >= 0 then 'none'
    when c._lt is null and s._res >= 0 and c._arr = (s._res = 1) then 'none'
    else 'undetermined' end as _outcome
from c join s using (_p, _rn)"""


def outside_sql(spec, table, accepted):
    """Records (flows: first records) whose event date is in no period: (no date, before, after)."""
    lst, date, _ = periods_of(spec, table)
    kind = table.get("kind", "count")
    if not date or kind not in ("count", "flow", "migration"):
        return None
    src = spec["sources"][table["source"]]
    person = q("raw_" + src.get("person_id", ""))
    col = q("raw_" + date)
    base = f"select * from read_parquet('{accepted}')"
    if "filter" in table and kind != "migration":
        values = ", ".join("'" + v.replace("'", "''") + "'" for v in table["filter"]["in"])
        base += f" where {q(table['filter']['column'])} in ({values})"
    if kind == "flow" and table.get("first") == "eurostat":
        return None  # the rule's kept records: checked through the cells
    if kind == "flow":
        base = (f"select * from ({base}) qualify row_number() over (partition by {person} "
                f"order by {col} asc, _file asc, _record asc) = 1")
    first, last = lst[0][2], lst[-1][3]
    return (f"select count(*) filter (where {col} is null), count(*) filter (where {col} < date '{first}'), "
            f"count(*) filter (where {col} > date '{last}') from ({base})")


def stock_statuses(src, cols, base, ref_date):
    """Status columns (`history` derivations) restated on the stock date: the step entered last
    on or before it (a tie: the step listed later), `_Z` before every dated step, `_U` when no
    step has a date."""
    harm = src.get("harmonize", {})
    repl = []
    for c in dict.fromkeys(cols):
        h = harm.get(c)
        if not (isinstance(h, dict) and "history" in h):
            continue
        r = f"date '{ref_date}'"
        steps = [(code, q("raw_" + f)) for code, f in h["history"]]
        whens = []
        for i, (code, fi) in enumerate(steps):
            beaten = [f"coalesce({fj} <= {r} and ({fj} > {fi}{f' or {fj} = {fi}' if j > i else ''}), false)"
                      for j, (_, fj) in enumerate(steps) if j != i]
            cond = " and ".join([f"coalesce({fi} <= {r}, false)"] + [f"not {b}" for b in beaten])
            whens.append(f"when {cond} then '{code}'")
        all_null = " and ".join(f"{f} is null" for _, f in steps)
        repl.append(f"case when {all_null} then '_U' {' '.join(whens)} else '_Z' end as {q(c)}")
    if not repl:
        return base
    return f"select * replace ({', '.join(repl)}) from ({base})"


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
    import json
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    failures = []
    for tid, table in sorted(spec.get("tables", {}).items()):
        dims = table["dimensions"]
        # The accepted records: one Parquet part per delivery file (Hive-partitioned by delivery).
        accepted = os.path.join(out, "restricted", "accepted", table["source"], "delivery=*", "part-0.parquet")
        periods, date, freq = periods_of(spec, table)
        folder = os.path.join(out, "restricted", "tables", tid)
        # One partition per period, named as the README says, and nothing else.
        found = sorted(os.listdir(folder))
        if found != sorted(p[1] for p in periods):
            failures.append(f"{tid}: partitions {found[:5]}..., expected {[p[1] for p in periods][:5]}...")
            continue
        cols = ", ".join(q(d) for d in dims)
        n_cells = n_expected = 0
        for period in periods:
            if table.get("kind") == "survey_contrast":
                # A contrast's cells: those of the other dimensions where every term's cell of
                # the base table has respondents; n is the smallest term's.
                base = dict(spec["tables"][table["of"]], source=table["source"])
                bdims = base["dimensions"]
                cube = {tuple(r[:-1]): r[-1] for r in duckdb.execute(reference_sql(spec, base, accepted, period)).fetchall()}
                codes = list(table["coefficients"]) if "coefficients" in table else list(table["ratio"])
                j = bdims.index(table["across"])
                expected = {}
                for k in cube:
                    other = tuple(k[bdims.index(d)] for d in dims)
                    terms = [cube.get(k[:j] + (c,) + k[j + 1:]) for c in codes]
                    if all(t is not None for t in terms):
                        expected[other] = min(terms)
            else:
                expected = {tuple(r[:-1]): r[-1] for r in duckdb.execute(reference_sql(spec, table, accepted, period)).fetchall()}
            if table.get("kind") == "survey_proportion":
                # Shares are published for the categories, not for their denominators (category _T).
                ci = dims.index(table["category"])
                expected = {k: v for k, v in expected.items() if k[ci] != "_T"}
            if not expected and not table.get("kind", "count").startswith("survey"):
                expected = {tuple("_T" for _ in dims): 0}  # an empty period: the grand total, 0
            path = os.path.join(folder, period[1], "data.parquet")
            got = {tuple(r[:-1]): r[-1] for r in duckdb.execute(
                f"select {cols}, n from read_parquet('{path}')").fetchall()}
            labels = {r[0] for r in duckdb.execute(f"select distinct ref_period from read_parquet('{path}')").fetchall()}
            want_label = period[0] if "/" not in period[0] else f"{period[2]}/{period[3]}"
            if labels != {want_label}:
                failures.append(f"{tid} {period[0]}: ref_period {labels}, expected {want_label}")
            missing = sorted(set(expected) - set(got))[:5]
            extra = sorted(set(got) - set(expected))[:5]
            wrong = [(k, got[k], expected[k]) for k in sorted(set(got) & set(expected)) if got[k] != expected[k]][:5]
            if missing or extra or wrong:
                failures.append(f"{tid} {period[0]}: missing {missing}, extra {extra}, wrong (cell, migstat, duckdb) {wrong}")
            n_cells += len(got)
            n_expected += len(expected)
        # The records left out of every period, as the manifest reports them.
        sql = outside_sql(spec, table, accepted)
        if table.get("kind") == "migration":
            lo, hi = periods[0][2], periods[-1][3]
            want = "true" if table["flow"] == "immigration" else "false"
            flt = ""
            if "filter" in table:
                values = ", ".join("'" + v.replace("'", "''") + "'" for v in table["filter"]["in"])
                flt = f" and {q(table['filter']['column'])} in ({values})"
            und = duckdb.execute(f"select count(*) from ({migration_sql(spec, table, accepted)}) where _outcome = 'undetermined' "
                                 f"and _arr = {want} and _d between date '{lo}' and date '{hi}'{flt}").fetchone()[0]
            rep = manifest["periods"][tid]["outside"]
            if rep.get("undetermined", 0) != und:
                failures.append(f"{tid}: manifest says {rep.get('undetermined')} undetermined crossings, DuckDB {und}")
        if sql:
            no_date, before, after = duckdb.execute(sql).fetchone()
            rep = manifest["periods"][tid]["outside"]
            if (rep["no_date"], rep["before"], rep["after"]) != (no_date, before, after):
                failures.append(f"{tid}: manifest says outside {rep}, DuckDB ({no_date}, {before}, {after})")
        if manifest["periods"][tid]["freq"] != freq or manifest["periods"][tid]["periods"] != [p[0] for p in periods]:
            failures.append(f"{tid}: manifest periods {manifest['periods'][tid]}, expected {freq} {[p[0] for p in periods]}")
        # Three readers, as the README reads them (Hive options on: the folders are not Hive
        # partitions, the period's typed column is in the files), same rows, the same total and
        # the period column with one type.
        glob = os.path.join(folder, "*", "*.parquet")
        pa = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
        key = next((k for k in ("ref_year", "ref_quarter", "ref_month", "ref_date") if k in pa.column_names), "ref_year")
        d_rows, d_sum, parts = duckdb.execute(
            f"select count(*), sum(n), count(distinct {key}) from read_parquet('{glob}', hive_partitioning = true)").fetchone()
        d_type = duckdb.execute(f"select typeof({key}) from read_parquet('{glob}', hive_partitioning = true) limit 1").fetchone()[0]
        plf = pl.scan_parquet(glob, hive_partitioning=True).collect()
        want_type = {"ref_year": ("BIGINT", "int64", pl.Int64), "ref_date": ("DATE", "date32[day]", pl.Date)}.get(
            key, ("VARCHAR", "string", pl.String))
        got_type = (d_type, str(pa.schema.field(key).type) if key in pa.column_names else None, plf.schema.get(key))
        if got_type[0] != want_type[0] or got_type[1] not in (want_type[1], "large_string", "string_view") or got_type[2] != want_type[2]:
            failures.append(f"{tid}: {key} read as {got_type} (DuckDB, pyarrow, polars), expected {want_type}")
        if not (d_rows == pa.num_rows == plf.height and d_sum == sum(pa.column("n").to_pylist()) == plf["n"].sum()):
            failures.append(f"{tid}: DuckDB, pyarrow and polars read different tables")
        if key not in pa.column_names or key not in plf.columns or parts != len(periods):
            failures.append(f"{tid}: the {key} partition column is not read back ({parts} of {len(periods)} periods)")
        print(f"{tid}: {len(periods)} periods ({freq}), {n_cells} cells, DuckDB CUBE {n_expected} cells")
    for f in failures:
        print("MISMATCH", f)
    print(f"duckdb tables check: {'failed' if failures else 'agreed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
