#!/usr/bin/env bash
# migstat against DuckDB on the same border-crossing deliveries (issue 7).
#
#   bash benches/vs_duckdb.sh 10000000        # rows of border crossings (a multiple of 20,000)
#
# Steps, each timed alone with GNU time (wall, peak RSS):
#   (a) DuckDB: the border CSV files → one zstd Parquet file
#   (b) DuckDB: GROUP BY CUBE (MONTH, DIRECTION, SEX, CITIZENSHIP_REGION) from the harmonized
#       Parquet migstat wrote (the same dimensions as migstat's table)
#   (d) migstat: the same cube from the same Parquet file (`migstat tabulate`)
#   (c) migstat: the whole pipeline for that source — read, validate every row (types, patterns,
#       primary key), quarantine, harmonize, write Parquet, the full-cube table, rounding,
#       publish (benches/duckdb/pipeline.toml)
#   (e) DuckDB: the same work in SQL, the fair baseline (issue 19) — every value checked as the
#       schema says (types, required, patterns, lengths, enums, bounds, the primary key), failing
#       rows to a quarantine file with their reasons, the CSV reader's rejects kept, crosswalk
#       and code-list joins, month, age reached and its band, accepted rows to zstd Parquet, the
#       cube (benches/duckdb/duckdb_work.py `fair`); it must accept as many rows as migstat
# and the ratios (c) / (e), (c) / ((a) + (b)) and (d) / (b). Needs a release build, GNU time (Debian `time`) and the
# `duckdb` Python package (tests/requirements.txt). FAIR=0 leaves (e) out (at 30 M rows it peaks at
# 13.5 GiB; at 100 M it would not fit this machine's 24 GiB).
#
#   FAIR=0 bash benches/vs_duckdb.sh 100000000
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-10000000}
scale=$(( rows / 20000 ))
work=${WORK:-bench_data/duckdb-$scale}
bin=target/release/migstat
[ -x "$bin" ] || cargo build --release
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install --quiet -r tests/requirements.txt
mkdir -p "$work"

declare -A WALL RSS
measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/.time" "$@" > "$work/.stdout"
  read -r secs kb < "$work/.time"
  WALL[$label]=$secs; RSS[$label]=$kb
  awk -v l="$label" -v s="$secs" -v k="$kb" 'BEGIN { printf "%-30s wall %8.2f s   peak RSS %7.0f MiB\n", l, s, k / 1024 }'
}

if [ ! -f "$work/data/border_crossings.csv" ]; then
  echo "generating $rows border crossings (migstat sample --scale $scale --only border)"
  "$bin" sample --out "$work/data" --scale "$scale" --only border > /dev/null
fi
du -sh "$work/data" | awk '{print "input (border CSV)            " $1}'
sed -e "s#@DATA@#$PWD/$work/data#g" -e "s#@REPO@#$PWD#g" benches/duckdb/pipeline.toml > "$work/pipeline.toml"

rm -rf "$work/out" "$work/duck"
mkdir -p "$work/duck"
measure "(c) migstat pipeline" "$bin" -q run "$work/pipeline.toml" --out "$work/out"
measure "(a) duckdb csv -> parquet" python3 benches/duckdb/duckdb_work.py csv2parquet "$work/data" "$work/duck/border.parquet"
measure "(b) duckdb cube from parquet" python3 benches/duckdb/duckdb_work.py cube "$work/out/current/restricted/accepted/border/delivery=000000/part-0.parquet" "$work/duck/cube.parquet"
fair=${FAIR:-1}
if [ "$fair" != 0 ]; then
  mkdir -p "$work/duck/fair"
  measure "(e) duckdb fair pipeline" python3 benches/duckdb/duckdb_work.py fair "$work/data" "$PWD" "$work/duck/fair"
  cat "$work/.stdout"
fi
measure "(d) migstat cube from parquet" "$bin" -q tabulate "$work/out/current/restricted/accepted/border/delivery=000000/part-0.parquet" \
  --by MONTH,DIRECTION,SEX,CITIZENSHIP_REGION --out "$work/duck/migstat_cube.parquet"
if [ "$fair" != 0 ]; then
  awk -v c="${WALL[(c) migstat pipeline]}" -v e="${WALL[(e) duckdb fair pipeline]}" \
    'BEGIN { printf "ratio (c) / (e)               %.2f   (target <= 1.2)\n", c / e }'
fi
awk -v c="${WALL[(c) migstat pipeline]}" -v a="${WALL[(a) duckdb csv -> parquet]}" -v b="${WALL[(b) duckdb cube from parquet]}" \
  'BEGIN { printf "ratio (c) / ((a) + (b))       %.2f   (target <= 1.0)\n", c / (a + b) }'
awk -v d="${WALL[(d) migstat cube from parquet]}" -v b="${WALL[(b) duckdb cube from parquet]}" \
  'BEGIN { printf "ratio (d) / (b)               %.2f   (target <= 0.7)\n", d / b }'
# The fair baseline did the same work: as many rows accepted, quarantined and rejected as migstat.
[ "$fair" = 0 ] || python3 - "$work/out/current/manifest.json" "$work/duck/fair" <<'PY'
import json, sys, duckdb
m = json.load(open(sys.argv[1]))
s = next(s for s in m["sources"] if s["id"] == "border")
con = duckdb.connect()
accepted = con.execute(f"SELECT count(*) FROM read_parquet('{sys.argv[2]}/accepted.parquet')").fetchone()[0]
if accepted != s["rows_accepted"]:
    sys.exit(f"the fair baseline accepted {accepted:,} rows, migstat {s['rows_accepted']:,}: not the same work")
print(f"same work: {accepted:,} rows accepted by both")
PY
# Both cubes must hold the same cells and counts (DuckDB's NULL margins are migstat's _T).
python3 benches/duckdb/duckdb_work.py same "$work/duck/cube.parquet" "$work/duck/migstat_cube.parquet"
python3 - "$work/out/current/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for s in m["sources"]:
    print(f"migstat: {s['id']} {s['rows_read']:,} rows read, {s['rows_quarantined']:,} quarantined, source pass {s['seconds']:.1f} s")
for k, v in sorted(m.get("seconds", {}).items()):
    print(f"migstat: {k} {v:.1f} s")
PY
