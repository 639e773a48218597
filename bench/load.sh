#!/usr/bin/env bash
# Load and soak test of a FaceGate server on 127.0.0.1 (never another host):
# starts `facegate serve` on a fresh data directory, enrols the five people
# of the photo set, then drives CONNECTIONS concurrent check-in clients for
# DURATION seconds with wrk (Debian's `wrk` package) and prints the latency
# percentiles, throughput, the status codes seen, and the server's resident
# memory before and after.
#
#   bench/load.sh                      # 50 clients for 60 s
#   DURATION=600 bench/load.sh         # the 10-minute soak
#
# Non-2xx answers are expected only as deliberate 503s (inference queue full).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-60}
PORT=${PORT:-3950}
CACHE=${FACEGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/facegate}
PHOTOS="$CACHE/data/faces5"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[[ -x target/release/facegate ]] || cargo build --release --package server --bin facegate

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/site" && printf 'js: a\nwasm: b\ncss: c\n' > "$work/site/hash.txt"
password=load-test-password
hash=$(printf '%s\n' "$password" | target/release/facegate hash-password)

# No per-client rate limit: every request comes from 127.0.0.1.
FACEGATE_DATA_DIR="$work/data" FACEGATE_ADMIN_PASSWORD_HASH="$hash" RUST_LOG=warn \
    target/release/facegate serve --addr "127.0.0.1:$PORT" --site-root "$work/site" \
    --check-in-rate 0 &
server=$!
base="http://127.0.0.1:$PORT/api/v1"
for _ in $(seq 120); do curl -sf "$base/ready" >/dev/null && break; sleep 0.5; done
token=$(curl -sf "$base/session" -H 'content-type: application/json' \
    -d "{\"password\": \"$password\"}" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/')
for person in "$PHOTOS"/train/*/; do
    args=()
    for photo in "$person"*; do args+=(-F "photo=@$photo"); done
    curl -sf "$base/people?allow_lookalike=true" -H "authorization: Bearer $token" \
        -F "name=$(basename "$person")" "${args[@]}" >/dev/null
done

frame=$(ls "$PHOTOS"/val/jerry_seinfeld/* | head -n 1)
cat > "$work/checkin.lua" <<LUA
local f = io.open("$frame", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["content-type"] = "image/jpeg"
wrk.headers["authorization"] = "Bearer $token"
function done(summary, latency, requests)
  io.write(string.format("latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; %.1f check-ins/s\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6)))
end
LUA

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$server/status"; }
echo "RSS at start: $(rss)"
wrk --threads 2 --connections "$CONNECTIONS" --duration "${DURATION}s" --timeout 30s --latency \
    --script "$work/checkin.lua" "$base/checkins" | tee "$work/wrk.txt"
echo "RSS at end:   $(rss)"
echo "reference: one check-in alone"
time curl -s -o /dev/null -w '%{http_code}\n' "$base/checkins" -H "authorization: Bearer $token" \
    -H 'content-type: image/jpeg' --data-binary "@$frame"
