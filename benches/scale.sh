#!/usr/bin/env bash
# End-to-end run at scale: generate a sample with `migstat sample --scale N`, run the default
# pipeline's sources on it, and report wall time and peak RSS of each step.
#
#   bash benches/scale.sh 500          # 10 million border crossings (~1.3 GB of CSV in all)
#
# Needs a release build (cargo build --release) and GNU time (/usr/bin/time, Debian package `time`).
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-500}
work=${WORK:-bench_data/scale-$scale}
bin=target/release/migstat
[ -x "$bin" ] || cargo build --release
mkdir -p "$work"

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/.time" "$@" > "$work/.stdout"
  read -r secs kb < "$work/.time"
  awk -v l="$label" -v s="$secs" -v k="$kb" 'BEGIN { printf "%-10s wall %7.1f s   peak RSS %7.0f MiB\n", l, s, k / 1024 }'
}

if [ ! -f "$work/data/border_crossings.csv" ]; then
  measure sample "$bin" sample --out "$work/data" --scale "$scale"
fi
# The census totals the survey is calibrated to are population figures, not generated: the
# committed ones serve any scale.
[ -d "$work/data/census" ] || cp -r sample_data/census "$work/data/census"
# The default pipeline, pointed at the generated data.
sed -e "s#\.\./sample_data/#$PWD/$work/data/#g" -e "s#\.\./schemas/#$PWD/schemas/#g" \
  pipelines/observatory.toml > "$work/pipeline.toml"
rm -rf "$work/out"
measure run "$bin" -q run "$work/pipeline.toml" --out "$work/out"
find "$work/data" -type f -exec cat {} + | wc -c | awk '{printf "input      %.0f MiB\n", $1/1048576}'
python3 - "$work/out/current/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for s in m["sources"]:
    print(f"  {s['id']:<12} {s['rows_read']:>11,} rows  {s['seconds']:>7.1f} s  quarantined {s['rows_quarantined']:,}")
PY
