#!/usr/bin/env bash
# Calibrated survey estimates, side by side: migstat, R's survey package and the Python `svy`
# package (Rust kernels) on the same synthetic survey raked to the same census-like margins
# (sex × age group, region); each then estimates the population with its standard error for
# every cell of the full cube of 5 dimensions. Wall time and peak RSS of each, and the largest
# differences from R of migstat's and svy's estimates and SEs.
#
#   bash benches/survey_calibrated.sh 1000000
#   SKIP_R=1 bash benches/survey_calibrated.sh 1000000   # R's calibrated svyby takes hours at 1 M
#
# Needs what benches/survey_vs_r.sh needs, and a virtual environment with svy:
#   python3 -m venv bench_data/svyenv && bench_data/svyenv/bin/pip install svy==0.35.0
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
work=bench_data/survey # benches/survey/pipeline_calibrated.toml reads $work/survey.csv and margins
bin=target/release/migstat
svypy=${SVY_PYTHON:-bench_data/svyenv/bin/python}
[ -x "$bin" ] || cargo build --release
mkdir -p "$work"

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/.time.$label" "$@" > "$work/.stdout.$label"
  read -r secs kb < "$work/.time.$label"
  awk -v l="$label" -v s="$secs" -v k="$kb" 'BEGIN { printf "%-8s wall %8.1f s   peak RSS %7.0f MiB\n", l, s, k / 1024 }'
}

if [ "$(cat "$work/.rows" 2>/dev/null)" != "$n" ]; then
  python3 benches/survey/make_data.py "$n" "$work/survey.csv"
  echo "$n" > "$work/.rows"
fi
# Census-like margins: the design-weighted totals, each moved by a fixed factor (0.95 to 1.13),
# the region margin rescaled to the same population.
python3 - "$work" <<'PY'
import sys, duckdb
w = sys.argv[1]
age = "case when age <= 14 then 'Y_LT15' when age <= 24 then 'Y15T24' when age <= 64 then 'Y25T64' else 'Y_GE65' end"
sa = duckdb.sql(f"select sex, {age} as a, sum(weight) from read_csv('{w}/survey.csv') group by all order by all").fetchall()
rg = duckdb.sql(f"select 'MA-' || lpad(region::varchar, 2, '0'), sum(weight) from read_csv('{w}/survey.csv', types = {{'region': 'VARCHAR'}}) group by all order by all").fetchall()
f = lambda i: 0.95 + 0.02 * (i * 5 % 10)
sa = [(s, a, round(t * f(i))) for i, (s, a, t) in enumerate(sa)]
n = sum(t for *_, t in sa)
raw = [(r, t * f(i + 3)) for i, (r, t) in enumerate(rg)]
k = n / sum(t for _, t in raw)
rg = [[r, int(t * k)] for r, t in raw]
rg[0][1] += n - sum(t for _, t in rg)
with open(f"{w}/margin_sex_age.csv", "w") as o:
    o.write("SEX,AGE_GROUP,total\n" + "".join(f"{s},{a},{t}\n" for s, a, t in sa))
with open(f"{w}/margin_region.csv", "w") as o:
    o.write("REGION,total\n" + "".join(f"{r},{t}\n" for r, t in rg))
PY
rm -rf "$work/out_cal"
measure migstat "$bin" -q run benches/survey/pipeline_calibrated.toml --out "$work/out_cal"
if [ -z "${SKIP_R:-}" ]; then
  measure R Rscript benches/survey/svyby.R "$work/survey.csv" "$work/r_cal_cells.csv" "$work/margin_sex_age.csv" "$work/margin_region.csv"
  cat "$work/.stdout.R"
else
  rm -f "$work/.time.R"
fi
measure svy "$svypy" benches/survey/svy_cube.py "$work/survey.csv" "$work/margin_sex_age.csv" "$work/margin_region.csv" "$work/svy_cal_cells.csv"
cat "$work/.stdout.svy"
python3 - "$work" <<'PY'
import os, sys, duckdb
w = sys.argv[1]
tools = [k for k in ("migstat", "R", "svy") if os.path.exists(f"{w}/.time.{k}")]
t = {k: float(open(f"{w}/.time.{k}").read().split()[0]) for k in tools}
dims = ["SEX", "AGE_GROUP", "MIGRATION_TYPE", "REGION", "EDU"]
types = "types = {'REGION': 'VARCHAR', 'EDU': 'VARCHAR'}"
tables = {
    "migstat": f"'{w}/out_cal/current/restricted/tables/population/2024/data.parquet'",
    "svy": f"read_csv('{w}/svy_cal_cells.csv', {types})",
    "R": f"read_csv('{w}/r_cal_cells.csv', {types})",
}
def diff(tool, ref):
    on = " and ".join(f"m.{d} = r.{d}" for d in dims)
    q = f"""select count(*), count(r.estimate), max(abs(m.estimate - r.estimate) / r.estimate),
      max(abs(m.se - r.se) / r.se) filter (where r.se > 1e-6 * r.estimate) from {tables[tool]} m
      left join {tables[ref]} r on {on}"""
    cells, matched, est, se = duckdb.sql(q).fetchall()[0]
    print(f"{tool:8} {cells:,} cells, {matched:,} found in {ref}'s; largest relative difference: estimates {est:.1e}, SEs {se:.1e}")
ref = "R" if "R" in t else "migstat"
for tool in ("migstat", "svy"):
    if tool != ref:
        diff(tool, ref)
print("wall time ratios: " + ", ".join(f"{k} / migstat = {t[k] / t['migstat']:.1f}x" for k in tools if k != "migstat"))
PY
