"""Write the parquet_writers fixture's delivery as pandas, polars, DuckDB and R's arrow write it,
as an Excel workbook (openpyxl), and as SPSS and Stata files (pyreadstat, pandas).

Usage: parquet_writers.py DIR   (DIR holds delivery.csv; the Parquet files are written beside it)

Each writer keeps its own physical types, which is the point: pandas writes dates as
timestamp[ns] at midnight and an integer column with a missing value as float64; polars writes
Date32 and nullable Int64; DuckDB DATE, TIMESTAMP and DECIMAL; arrow (as R's arrow package does
for factors and long text) dictionary and large strings, date32, int32 and decimal128.
"""
import datetime as dt
import decimal
import os
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

d = sys.argv[1]
rows = [
    # id, born, arrived, children, weight, year, active
    ("a1", dt.date(1990, 5, 17), dt.datetime(2020, 3, 1), 2, 61.5, 2020, True),
    ("a2", dt.date(1985, 1, 5), dt.datetime(2024, 1, 4), None, 70.25, 2024, False),
    ("a3", dt.date(1970, 12, 31), dt.datetime(2021, 6, 30, 13, 30), 0, 80.0, 2021, True),
    ("a4", dt.date(2000, 2, 29), dt.datetime(2022, 2, 28), 34.5, 55.0, 2022, False),
    ("a5", dt.date(1999, 9, 9), dt.datetime(2023, 9, 9), -1, 55.0, 2023, False),
]
cols = ["id", "born", "arrived", "children", "weight", "year", "active"]

# pandas: datetime64[ns] for both dates, float64 for the integer column with a NaN.
p = pd.DataFrame(rows, columns=cols)
p["born"] = pd.to_datetime(p["born"]).astype("datetime64[ns]")
p["arrived"] = pd.to_datetime(p["arrived"]).astype("datetime64[ns]")
p["children"] = p["children"].astype("float64")
p.to_parquet(os.path.join(d, "pandas.parquet"), index=False, coerce_timestamps=None,
             allow_truncated_timestamps=False)

# polars: Date, Datetime(us), Float64 children (34.5 does not fit Int64), Int64 year.
pl.DataFrame(
    {c: [r[i] for r in rows] for i, c in enumerate(cols)},
    schema={"id": pl.String, "born": pl.Date, "arrived": pl.Datetime("us"),
            "children": pl.Float64, "weight": pl.Float64, "year": pl.Int64,
            "active": pl.Boolean},
).write_parquet(os.path.join(d, "polars.parquet"))

# DuckDB: DATE, TIMESTAMP, DECIMAL(4,1) children, DOUBLE weight, INTEGER year.
con = duckdb.connect()
con.execute("CREATE TABLE t (id VARCHAR, born DATE, arrived TIMESTAMP, children DECIMAL(4,1), "
            "weight DOUBLE, year INTEGER, active BOOLEAN)")
con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
con.execute(f"COPY t TO '{os.path.join(d, 'duckdb.parquet')}' (FORMAT parquet)")

# arrow as R writes factors and long text: dictionary and large strings, date32,
# timestamp[ms], decimal128 children, int32 year.
table = pa.table({
    "id": pa.array([r[0] for r in rows]).dictionary_encode(),
    "born": pa.array([r[1] for r in rows], pa.date32()),
    "arrived": pa.array([r[2] for r in rows], pa.timestamp("ms")),
    "children": pa.array([None if r[3] is None else decimal.Decimal(str(r[3])) for r in rows],
                         pa.decimal128(5, 1)),
    "weight": pa.array([r[4] for r in rows], pa.float64()),
    "year": pa.array([r[5] for r in rows], pa.int32()),
    "active": pa.array([r[6] for r in rows], pa.bool_()),
})
table = table.set_column(0, "id", table.column("id"))
pq.write_table(table, os.path.join(d, "arrow.parquet"))
# Excel, as a ministry sends it: a title above the header (header on row 3), a sheet named in
# French, real Excel dates (a datetime where the time is set), numbers and booleans as cells.
import openpyxl

wb = openpyxl.Workbook()
ws = wb.active
ws.title = "Données"
ws["A1"] = "Registre des arrivées — extrait"
ws.append([])
ws.append(cols)
for r in rows:
    ws.append([r[0], r[1], r[2], r[3], r[4], r[5], r[6]])
ws.append([])  # an empty row at the end is not a record
wb.save(os.path.join(d, "excel.xlsx"))

# SPSS and Stata as survey institutes send them. pyreadstat (ReadStat's writer): dates as SPSS
# DATE11 and Stata %td, datetimes as DATETIME20 and %tc, every number a double (SPSS) or as its
# dtype (Stata), booleans as 0/1. pandas' own Stata writer (format 118): %td and %tc, an int8
# flag. SPSS portable (.por) through pyreadstat too.
import pyreadstat

s = pd.DataFrame(rows, columns=cols)
s["children"] = s["children"].astype("float64")
pyreadstat.write_sav(s, os.path.join(d, "spss.sav"))
pyreadstat.write_sav(s, os.path.join(d, "spss.zsav"), compress=True)
pyreadstat.write_por(s, os.path.join(d, "spss.por"))
pyreadstat.write_dta(s, os.path.join(d, "stata.dta"))
t = s.copy()
t["born"] = pd.to_datetime(t["born"])
t["active"] = t["active"].astype("int8")
t.to_stata(os.path.join(d, "pandas.dta"), write_index=False, version=118,
           convert_dates={"born": "td", "arrived": "tc"})

# Value labels as crosswalks: two waves of a survey code sex 1/2 the other way round; only the
# labels say which is which. Wave 2 also has a 9 without a label. As SPSS and as Stata files
# (Stata stores its labels after the data).
w1 = pd.DataFrame({"id": ["w1-1", "w1-2", "w1-3"], "sex": [1, 2, 1]})
w2 = pd.DataFrame({"id": ["w2-1", "w2-2", "w2-3"], "sex": [1, 2, 9]})
for name, w, labels in [("wave1", w1, {1: "Homme", 2: "Femme"}),
                        ("wave2", w2, {1: "Femme", 2: "Homme"})]:
    pyreadstat.write_sav(w, os.path.join(d, name + ".sav"),
                         variable_value_labels={"sex": labels})
    pyreadstat.write_dta(w, os.path.join(d, name + ".dta"),
                         variable_value_labels={"sex": labels})

# A Stata 118 file (UTF-8) whose text carries a byte that is not UTF-8: the record is
# quarantined (invalid_encoding), not read with a replacement character.
bad = os.path.join(d, "bad_text.dta")
pyreadstat.write_dta(pd.DataFrame({"id": ["u1", "uZq"], "sex": [1, 2]}), bad)
with open(bad, "rb") as f:
    data = f.read()
assert data.count(b"uZq") == 1
with open(bad, "wb") as f:
    f.write(data.replace(b"uZq", b"u\xffq"))
print("parquet writers: written")
