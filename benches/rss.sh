#!/usr/bin/env bash
# Peak memory of the border-crossing pipeline at a given number of rows (issue 19, item 3).
#
#   bash benches/rss.sh 30000000      # then 300000000: the two peaks should be within 10%
#   PIPELINE=persons bash benches/rss.sh 30000000   # with two tables of persons (migrations)
#
# Uses the deliveries and pipeline of benches/vs_duckdb.sh (bench_data/duckdb-<scale>/, generated
# here when missing: 300 M rows are 22 GB of CSV and take about 4 minutes to write) and times
# `migstat run` alone with GNU time (wall, peak RSS). Needs a release build and Debian `time`.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-30000000}
scale=$(( rows / 20000 ))
work=${WORK:-bench_data/duckdb-$scale}
bin=target/release/migstat
[ -x "$bin" ] || cargo build --release
if [ ! -f "$work/data/border_crossings.csv" ]; then
  echo "generating $rows border crossings (migstat sample --scale $scale --only border)"
  "$bin" sample --out "$work/data" --scale "$scale" --only border > /dev/null
fi
pipeline=${PIPELINE:-pipeline}
sed -e "s#@DATA@#$PWD/$work/data#g" -e "s#@REPO@#$PWD#g" "benches/duckdb/$pipeline.toml" > "$work/$pipeline.toml"
rm -rf "$work/out"
/usr/bin/time -f "%e %M" -o "$work/.time" "$bin" -q run "$work/$pipeline.toml" --out "$work/out" > /dev/null
read -r secs kb < "$work/.time"
awk -v r="$rows" -v s="$secs" -v k="$kb" 'BEGIN { printf "%d rows: wall %.1f s, peak RSS %.0f MiB\n", r, s, k / 1024 }'
rm -rf "$work/out"
