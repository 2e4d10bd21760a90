#!/usr/bin/env bash
# The border-crossing pipeline of benches/vs_duckdb.sh, local and on a local Ballista cluster of
# 1, 2 and 3 executors (issue 20): wall time and peak memory of each run, the seconds of the
# source pass and of the cluster's counting after it (`engine:border` in the manifest), and that
# every release file is identical to the local run's.
#
#   cargo build --release --features distributed
#   bash benches/distributed.sh 100000000          # EXECUTORS="1 2 3" by default
#   PIPELINE=persons bash benches/distributed.sh 30000000   # two tables of persons (migrations):
#                                                  # the records shuffled by person on the cluster
#
# On one 2-core machine the executors share the cores with each other and with the run, so no
# speed-up can show: this measures the overhead and where the time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-10000000}
scale=$(( rows / 20000 ))
work=${WORK:-bench_data/duckdb-$scale}
bin=target/release/migstat
"$bin" engine --help > /dev/null 2>&1 || { echo "build with --features distributed first"; exit 1; }
if [ ! -f "$work/data/border_crossings.csv" ]; then
  "$bin" sample --out "$work/data" --scale "$scale" --only border > /dev/null
fi
pipeline=${PIPELINE:-pipeline}
sed -e "s#@DATA@#$PWD/$work/data#g" -e "s#@REPO@#$PWD#g" "benches/duckdb/$pipeline.toml" > "$work/$pipeline.toml"
export MIGSTAT_PROTECTION_KEY=benchmark-key-0123456789abcdef
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

files() { python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print('\n'.join(o['path']+' '+o['blake3'] for o in m['outputs']))" "$1/current/manifest.json"; }
# The source pass, the engine's counting after it (a cluster's part for tables of events), and
# the tables and groups after that (tables of persons: also the cluster's), from the manifest.
stages() { python3 -c "import json,sys; s=json.load(open(sys.argv[1])).get('seconds',{}); t=sum(v for k,v in s.items() if k.startswith(('table:','group:'))); print('source %.1f s, engine %.1f s, tables %.1f s' % (s.get('source:border',0), s.get('engine:border',0), t))" "$1/current/manifest.json"; }

run() { # engine out
  rm -rf "$2"
  /usr/bin/time -f "%e %M" -o "$work/.time" "$bin" -q run "$work/$pipeline.toml" --out "$2" --engine "$1" > /dev/null
  read -r secs kb < "$work/.time"
  printf "%-32s wall %7.1f s  peak RSS %6.0f MiB  (%s)\n" "$1" "$secs" "$((kb / 1024))" "$(stages "$2")"
}

echo "$rows rows ($(du -h "$work/data/border_crossings.csv" | cut -f1) of CSV), benches/duckdb/$pipeline.toml"
run local "$work/out-local"
files "$work/out-local" > "$work/.local-files"
for n in ${EXECUTORS:-1 2 3}; do
  cleanup; pids=()
  port=$((51000 + n * 100))
  "$bin" engine scheduler --bind "127.0.0.1:$port" > "$work/scheduler.log" 2>&1 & pids+=($!)
  sleep 2
  for i in $(seq 1 "$n"); do
    mkdir -p "$work/executor-$i"
    "$bin" engine executor --scheduler "127.0.0.1:$port" --port $((port + 10 * i)) \
      --grpc-port $((port + 10 * i + 1)) --work-dir "$work/executor-$i" --concurrent-tasks 2 \
      > "$work/executor-$i.log" 2>&1 & pids+=($!)
  done
  sleep 3
  run "ballista://127.0.0.1:$port" "$work/out-ballista-$n"
  # Each executor's peak memory (VmHWM), the scheduler's first.
  hwm=""
  for p in "${pids[@]}"; do
    hwm="$hwm $(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$p/status" 2>/dev/null || echo "?")"
  done
  echo "  peak RSS of scheduler and executors (MiB):$hwm"
  if files "$work/out-ballista-$n" | cmp -s - "$work/.local-files"; then
    echo "  $n executor(s): the release is identical to the local one"
  else
    echo "  $n executor(s): THE RELEASE DIFFERS"; exit 1
  fi
  rm -rf "$work/out-ballista-$n"
done
rm -rf "$work/out-local"
