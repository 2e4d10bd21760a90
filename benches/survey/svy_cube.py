"""The Python `svy` package (Samplics LLC; Rust kernels) on the calibrated benchmark survey: the
design raked to the same margins, then total(one) with its Taylor SE for every margin
combination of the 5 dimensions (by= each combination), timed; one CSV row per cell.

    python benches/survey/svy_cube.py survey.csv margin_sex_age.csv margin_region.csv out.csv

Needs `pip install svy==0.35.0` (kept out of tests/requirements.txt: only this benchmark uses it).
"""
import csv
import itertools
import sys
import time

import polars as pl
import svy

data, sa_path, rg_path, out = sys.argv[1:5]
t0 = time.perf_counter()
d = pl.read_csv(data, schema_overrides={"region": pl.Utf8, "migration_type": pl.Utf8, "edu": pl.Utf8})
# The same harmonization as benches/survey/pipeline.toml.
d = d.with_columns(
    pl.lit(1.0).alias("one"),
    pl.col("sex").alias("SEX"),
    pl.when(pl.col("age") <= 14).then(pl.lit("Y_LT15"))
    .when(pl.col("age") <= 24).then(pl.lit("Y15T24"))
    .when(pl.col("age") <= 64).then(pl.lit("Y25T64"))
    .otherwise(pl.lit("Y_GE65")).alias("AGE_GROUP"),
    pl.col("migration_type").replace_strict(
        {"1": "EMIGRANT", "2": "RETURNEE", "3": "IMMIGRANT", "4": "NON_MIGRANT"}).alias("MIGRATION_TYPE"),
    ("MA-" + pl.col("region")).alias("REGION"),
    ("E" + pl.col("edu")).alias("EDU"),
)
d = d.with_columns((pl.col("SEX") + ":" + pl.col("AGE_GROUP")).alias("SA"))
sa = {f"{r['SEX']}:{r['AGE_GROUP']}": float(r["total"]) for r in csv.DictReader(open(sa_path))}
rg = {r["REGION"]: float(r["total"]) for r in csv.DictReader(open(rg_path))}
sample = svy.Sample(d, svy.Design(stratum="stratum", psu="psu", wgt="weight"))
sample = sample.weighting.rake(controls={"SA": sa, "REGION": rg}, wgt_name="rk_wgt")
sample = svy.Sample(sample.data, svy.Design(stratum="stratum", psu="psu", wgt="rk_wgt"))
t1 = time.perf_counter()
dims = ["SEX", "AGE_GROUP", "MIGRATION_TYPE", "REGION", "EDU"]
rows = []
for k in range(len(dims) + 1):
    for keep in itertools.combinations(dims, k):
        est = sample.estimation.total("one", by=keep if keep else None).to_polars()
        for r in est.iter_rows(named=True):
            rows.append([r.get(x, "_T") if x in keep else "_T" for x in dims] + [r["est"], r["se"]])
t2 = time.perf_counter()
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(dims + ["estimate", "se"])
    w.writerows(rows)
print(f"svy {svy.__version__}: {len(rows)} cells; read + design + raking {t1 - t0:.1f} s, cube {t2 - t1:.1f} s")
