#!/usr/bin/env bash
# migstat against R's survey package on the same synthetic survey: the estimated population with
# standard errors (Taylor linearization, stratified cluster design) for every cell of the full
# cube of 5 dimensions; wall time and peak RSS of each, their ratio, and the largest difference
# between the two sets of estimates.
#
#   bash benches/survey_vs_r.sh 1000000     # 1 M respondents, 400 strata, 4,000 PSUs
#
# Needs a release build (built if missing), GNU time (Debian `time`), Python 3 with duckdb
# (tests/requirements.txt) and R with the survey package (Debian `r-base-core r-cran-survey`).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
work=bench_data/survey # benches/survey/pipeline.toml reads $work/survey.csv
bin=target/release/migstat
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
rm -rf "$work/out"
measure migstat "$bin" -q run benches/survey/pipeline.toml --out "$work/out"
measure R Rscript benches/survey/svyby.R "$work/survey.csv" "$work/r_cells.csv"
cat "$work/.stdout.R"
python3 - "$work" <<'PY'
import sys, duckdb
w = sys.argv[1]
m = float(open(f"{w}/.time.migstat").read().split()[0])
r = float(open(f"{w}/.time.R").read().split()[0])
dims = ["SEX", "AGE_GROUP", "MIGRATION_TYPE", "REGION", "EDU"]
on = " and ".join(f"m.{d} = r.{d}" for d in dims)
q = f"""select count(*) as cells, count(r.estimate) as matched,
  max(abs(m.estimate - r.estimate) / r.estimate) as est, max(abs(m.se - r.se) / r.se) as se
  from '{w}/out/current/restricted/tables/population/2024/data.parquet' m
  left join read_csv('{w}/r_cells.csv', all_varchar = false, types = {{'REGION': 'VARCHAR', 'EDU': 'VARCHAR'}}) r on {on}"""
cells, matched, est, se = duckdb.sql(q).fetchall()[0]
print(f"cells    {cells:,} published by migstat, {matched:,} found in R's output")
print(f"largest relative difference: estimates {est:.1e}, standard errors {se:.1e}")
print(f"ratio    R / migstat wall time = {r / m:.0f}x")
PY
