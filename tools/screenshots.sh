#!/usr/bin/env bash
# The report's screenshots in docs/, one per publication language, from the default pipeline on
# the committed sample, rendered by headless Chromium (apt-get install chromium):
#
#     bash tools/screenshots.sh            # builds migstat (release), writes docs/report-{en,fr,ar}.png
#
# The integration test `the_report_loads_in_headless_chromium_with_every_pyramid_drawn` renders
# the same pages the same way and checks that these files exist.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
./target/release/migstat run pipelines/observatory.toml --out "$out/out" >/dev/null
for page in index:en index.fr:fr index.ar:ar; do
  file=${page%%:*}; lang=${page##*:}
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --disable-quic \
    --user-data-dir="$out/profile-$lang" --window-size=1100,900 \
    --screenshot="docs/report-$lang.png" "file://$out/out/current/report/$file.html" 2>/dev/null
  echo "docs/report-$lang.png"
done
