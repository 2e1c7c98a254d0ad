#!/usr/bin/env bash
# End-to-end benchmarks against the simulator with 50 ms added latency, one command:
#   scripts/bench.sh            (prints a Markdown report on stdout; BENCHMARKS.md holds one)
#   scripts/bench.sh serve      (the serve benchmark alone)
# Needs: a Rust toolchain, GNU time (/usr/bin/time) for peak RSS, python3 for the arithmetic.
# The peak RSS column is the largest of the runs.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
LATENCY_MS=50
cargo build --release --locked -q
BIN=$PWD/target/release/maas-usage
WORK=$(mktemp -d)
trap 'kill $SIM_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN" simulator --listen 127.0.0.1:0 --latency ${LATENCY_MS}ms >"$WORK/sim.url" 2>/dev/null &
SIM_PID=$!
for _ in $(seq 50); do [ -s "$WORK/sim.url" ] && break; sleep 0.1; done
URL=$(head -1 "$WORK/sim.url")
export HW_ACCESS_KEY=DEMOACCESSKEY0000001 HW_SECRET_KEY=demo-secret-key-for-the-built-in-simulator
PROJECT=0123456789abcdef0123456789abcdef

head() {  # $1 rpm, $2 concurrency
  printf 'apiVersion: maas-usage/v1\ncloud:\n  endpoint: %s\n  project_id: %s\ntimezone: Asia/Shanghai\nlimits:\n  timeout: 60s\n  requests_per_minute: %s\n  concurrency: %s\nqueries:\n' "$URL" "$PROJECT" "$1" "$2"
}
# 1. the seeds' single query: preset service, last 7 days.
{ head 200 4; printf '  - name: seed-7d\n    range: last_7d\n'; } >"$WORK/one.yaml"
# 2. twenty queries, twenty distinct calls.
{ head 200 4; for i in $(seq 1 20); do printf '  - name: q%s\n    range: last_%sd\n' "$i" "$i"; done; } >"$WORK/twenty.yaml"
# 3. 120 series: 40 queries x 3 service types, 600 calls a minute (10/s), 8 in flight.
{ head 600 8; for i in $(seq 1 40); do printf '  - name: q%s\n    range: last_%sh\n    service_types: [preset, my_service, custom_endpoint]\n' "$i" "$i"; done; } >"$WORK/big.yaml"

if [ "${1:-}" != serve ]; then
echo "| scenario | series | calls planned | calls made | wall time (median of $RUNS) | ceil(calls/conc) x latency | calls / rate | wall / max(both) | wall / latency term | peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for case in "one:1:200:4" "twenty:20:200:4" "big:120:600:8"; do
  IFS=: read -r name series rpm conc <<<"$case"
  planned=$("$BIN" plan --spec "$WORK/$name.yaml" | sed -n 's/.*series, \([0-9]*\) calls.*/\1/p')
  walls=(); rss=0; made=0
  for _ in $(seq "$RUNS"); do
    # Each run gets a fresh state directory so the budget starts empty, as for a lone process.
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$BIN" run --spec "$WORK/$name.yaml" --state-dir "$WORK/state-$RANDOM$RANDOM" >"$WORK/out" 2>"$WORK/err"
    read -r wall kb <"$WORK/time"
    walls+=("$wall"); [ "$kb" -gt "$rss" ] && rss=$kb
    made=$(sed -n 's/.*api_calls=\([0-9]*\)i.*/\1/p' "$WORK/out")
  done
  python3 - "$name" "$series" "$planned" "$made" "$rpm" "$conc" "$LATENCY_MS" "$rss" "${walls[@]}" <<'PY'
import math, statistics, sys
name, series, planned, made, rpm, conc, lat, rss, *walls = sys.argv[1:]
planned, made, rpm, conc, lat, rss = int(planned), int(made), int(rpm), int(conc), int(lat), int(rss)
wall = statistics.median(float(w) for w in walls)
lat_term = math.ceil(planned / conc) * lat / 1000
rate_term = planned / (rpm / 60)
print(f"| {name} | {series} | {planned} | {made} | {wall:.3f} s | {lat_term:.3f} s | {rate_term:.3f} s | {wall / max(lat_term, rate_term):.2f} | {wall / lat_term:.2f} | {rss / 1024:.1f} MiB |")
PY
done

# Peak RSS (GNU time's maximum resident set size) of a start that does nothing and of one query
# call: min and median of RUNS each.
rss() {  # prints "min / median" in MiB of RUNS runs of the command
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f '%M' -o "$WORK/time" "$@" >/dev/null 2>&1
    cat "$WORK/time"
  done | sort -n | python3 -c 'import statistics, sys; v = [int(x) for x in sys.stdin]; print(f"{min(v) / 1024:.1f} / {statistics.median(v) / 1024:.1f} MiB")'
}
echo
echo "- peak RSS, min / median of $RUNS: \`maas-usage --version\` $(rss "$BIN" --version);" \
  "\`maas-usage query\` (one call) $(rss "$BIN" query --endpoint "$URL" --iam-endpoint "$URL" --project-id "$PROJECT" --state-dir "$WORK/state-query")"
start=$(date +%s%N); for _ in $(seq 100); do "$BIN" --version >/dev/null; done; end=$(date +%s%N)
echo "- \`maas-usage --version\`: $(( (end - start) / 100 / 1000 )) µs per run (mean of 100, process start to exit)"
echo "- release binary: $(stat -c %s "$BIN") bytes ($(numfmt --to=iec "$(stat -c %s "$BIN")"))"
fi

# 4. about 1 MB of page for serve: 134 queries x 3 service types (402 calls within 600 a minute).
{ head 600 8; for i in $(seq 1 134); do printf '  - name: q%s\n    range: last_%sh\n    service_types: [preset, my_service, custom_endpoint]\n' "$i" "$i"; done; } >"$WORK/huge.yaml"

# serve: the 120-series page scraped by 8 clients at once (2,000 scrapes), then again while 6
# clients hold connections open without sending anything, then by one client alone, one scrape
# after the other (what a lone Prometheus sees): scrapes per second, latency percentiles, and
# serve's peak RSS (VmHWM) at the end; then the ~1 MB page by one client alone.
serve_bench() {  # $1 spec, $2 what to measure (load | alone)
  "$BIN" serve --spec "$1" --state-dir "$WORK/state-serve-$RANDOM" --listen 127.0.0.1:0 \
    --interval 1h 2>"$WORK/serve.err" >/dev/null &
  SERVE_PID=$!
  trap 'kill $SIM_PID $SERVE_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
  for _ in $(seq 100); do grep -q 'listening on' "$WORK/serve.err" && break; sleep 0.1; done
  ADDR=$(sed -n 's/.*listening on http:\/\///p' "$WORK/serve.err" | sed -n 1p)
  python3 - "$ADDR" "$SERVE_PID" "$2" <<'PY'
import socket, statistics, sys, threading, time, urllib.request
addr, pid, what = sys.argv[1], sys.argv[2], sys.argv[3]
url = f"http://{addr}/metrics"
while True:  # the first collection
    try:
        if urllib.request.urlopen(url, timeout=60).status == 200:
            break
    except Exception:
        time.sleep(0.2)
page = len(urllib.request.urlopen(url, timeout=30).read())
host, port = addr.rsplit(":", 1)

def scrape():
    """One GET on its own connection, read to the end (as Prometheus does)."""
    with socket.create_connection((host, int(port))) as s:
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode())
        got = 0
        while chunk := s.recv(1 << 16):
            got += len(chunk)
    assert got > page, got

def load(clients, per_client):
    lat, lock = [], threading.Lock()
    def worker():
        for _ in range(per_client):
            t = time.perf_counter()
            scrape()
            with lock:
                lat.append(time.perf_counter() - t)
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(lat, n=100)
    return len(lat) / wall, q[49] * 1000, q[98] * 1000

def copy_ms():
    """What copying the page costs in this process: the floor a scrape cannot beat."""
    data = b"x" * page
    t = time.perf_counter()
    for _ in range(100):
        bytearray(data)
    return (time.perf_counter() - t) * 10

if what == "load":
    ok = load(8, 250)
    idle = [socket.create_connection((host, int(port))) for _ in range(6)]
    held = load(8, 250)
    for s in idle: s.close()
    alone = load(1, 500)
    hwm = next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM"))
    print(f"- `serve`, a {page / 1024:.0f} KiB page (120 series), 8 clients x 250 scrapes: "
          f"{ok[0]:.0f} scrapes/s, p50 {ok[1]:.1f} ms, p99 {ok[2]:.1f} ms; with 6 idle connections "
          f"held open meanwhile: {held[0]:.0f} scrapes/s, p50 {held[1]:.1f} ms, p99 {held[2]:.1f} ms; "
          f"one client alone, 500 scrapes one after the other: {alone[0]:.0f} scrapes/s, "
          f"p50 {alone[1]:.1f} ms, p99 {alone[2]:.1f} ms; peak RSS {int(hwm) / 1024:.1f} MiB")
else:
    alone = load(1, 200)
    print(f"- `serve`, a {page / 1024:.0f} KiB page (402 series), one client alone, 200 scrapes: "
          f"{alone[0]:.0f} scrapes/s, p50 {alone[1]:.1f} ms, p99 {alone[2]:.1f} ms "
          f"(copying the page once in the client: {copy_ms():.2f} ms)")
PY
  kill "$SERVE_PID" 2>/dev/null || true
  wait "$SERVE_PID" 2>/dev/null || true
}
serve_bench "$WORK/big.yaml" load
serve_bench "$WORK/huge.yaml" alone
