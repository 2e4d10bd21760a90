#!/usr/bin/env bash
# The default pipeline on the committed sample, as a new user runs it (`migstat run`): wall time,
# CPU time and peak RSS of each of N runs into a fresh output directory, then the median wall
# time and the seconds per stage of the last run (the manifest's `seconds`; protection groups
# run side by side, so their seconds overlap).
#
#   bash benches/sample_run.sh          # 5 runs
#   bash benches/sample_run.sh 11       # 11 runs
#
# Needs a release build (cargo build --release) and GNU time (/usr/bin/time, Debian package
# `time`). The run is the same work whatever the machine's load; its time is not: compare
# figures measured one after the other on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
bin=target/release/migstat
[ -x "$bin" ] || cargo build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: > "$work/walls"
for i in $(seq "$runs"); do
  rm -rf "$work/out"
  /usr/bin/time -f "%e %U %S %M" -o "$work/.time" "$bin" -q run pipelines/observatory.toml --out "$work/out" > /dev/null
  read -r wall user sys kb < "$work/.time"
  echo "$wall" >> "$work/walls"
  awk -v i="$i" -v w="$wall" -v u="$user" -v s="$sys" -v k="$kb" \
    'BEGIN { printf "run %2d: wall %5.2f s   cpu %5.2f s   peak RSS %4.0f MiB\n", i, w, u + s, k / 1024 }'
done
sort -n "$work/walls" | awk '{ a[NR] = $1 } END { printf "median wall %.2f s over %d runs\n", a[int((NR + 1) / 2)], NR }'
python3 - "$work/out/current/manifest.json" <<'EOF'
import json, sys
seconds = json.load(open(sys.argv[1]))["seconds"]
for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])[:8]:
    print(f"  {k:<40} {v:6.3f} s")
EOF
