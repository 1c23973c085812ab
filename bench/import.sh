#!/usr/bin/env bash
# Times a bulk import of N generated PDQ rows through the CLI into a fresh release server, and
# reports the server's peak memory and its restart time (index rebuilt from the store).
# Usage: bench/import.sh [ROWS]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q
bin=target/release/hashsieve
python3 - "$rows" > "$work/list.csv" <<'PY'
import random, sys
random.seed(1)
print("hash,id,labels,source")
for i in range(int(sys.argv[1])):
    print("%064x,item-%d,violent_extremism;video,bench" % (random.getrandbits(256), i))
PY
echo "rows: $rows ($(du -h "$work/list.csv" | cut -f1) of CSV)"
$bin serve --listen 127.0.0.1:50123 --data-dir "$work/data" 2>"$work/serve.log" &
server=$!
sleep 1
$bin bank create BENCH --action block --server http://127.0.0.1:50123 >/dev/null
start=$(date +%s.%N)
$bin import --bank BENCH --server http://127.0.0.1:50123 "$work/list.csv" &
client=$!
client_peak=0
while kill -0 $client 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$client/status 2>/dev/null || echo 0)
  [ "${rss:-0}" -gt "$client_peak" ] && client_peak=$rss
  sleep 0.1
done
wait $client
end=$(date +%s.%N)
echo "import client peak RSS (sampled): $((client_peak / 1024)) MiB"
echo "import: $(python3 -c "print(f'{$end - $start:.1f} s, {$rows / ($end - $start):,.0f} rows/s')")"
echo "server peak RSS after import: $(grep VmHWM /proc/$server/status | awk '{print $2/1024 " MiB"}')"
echo "store on disk: $(du -sh "$work/data" | cut -f1)"
kill $server; wait $server 2>/dev/null || true
start=$(date +%s.%N)
$bin serve --listen 127.0.0.1:50123 --data-dir "$work/data" 2>"$work/serve2.log" &
server=$!
until grep -q serving "$work/serve2.log"; do sleep 0.05; done
end=$(date +%s.%N)
echo "restart to serving (index rebuilt from store): $(python3 -c "print(f'{$end - $start:.1f} s')")"
echo "server RSS after restart: $(grep VmRSS /proc/$server/status | awk '{print $2/1024 " MiB"}')"
