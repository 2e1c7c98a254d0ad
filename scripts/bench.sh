#!/usr/bin/env bash
# End-to-end benchmarks against the simulator with 50 ms added latency, one command:
#   scripts/bench.sh            (prints a Markdown report on stdout; BENCHMARKS.md holds one)
#   scripts/bench.sh serve      (the serve benchmark alone)
#   scripts/bench.sh cloud-eye  (Cloud Eye at an organisation's scale alone, about 15 minutes)
#   scripts/bench.sh period-formats  (period mode's 30 days at 50 x 20 in each output, about 5 minutes)
# Needs: a Rust toolchain, GNU time (/usr/bin/time) for peak RSS, python3 for the arithmetic.
# The peak RSS column is the largest of the runs.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
CE_RUNS=${CE_RUNS:-3}
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

# Cloud Eye at an organisation's scale: `source: cloud_eye` per model and API key against
# `simulator --models N --keys K` (4 client IPs per model, so nearly every model-and-key series
# has traffic in every hour; 50 ms per answer), each run with a fresh state directory (a cold
# discovery) unless said otherwise. Calls by kind and answer sizes come from the simulator's
# --log, wall time from the clock around the run, CPU time and peak RSS from GNU time.
cloud_eye() {
  python3 - "$BIN" "$WORK" "$CE_RUNS" "$LATENCY_MS" <<'PY'
import json, math, os, re, statistics, subprocess, sys, time

BIN, WORK, RUNS, LATENCY_MS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
NOW = "2026-05-21T10:00:00+08:00"              # 02:00 UTC: a day from it is off four-hour boundaries
NOW_4H = "2026-05-21T08:00:00+08:00"           # 00:00 UTC: a day from it is on them
PROJECT = "0123456789abcdef0123456789abcdef"
CONCURRENCY = 4                                # limits.concurrency's default
MAX_OBJECTS, MAX_POINTS = 500, 3000            # per batch call: objects, datapoints (the API's caps)
SPAN_LIMIT_H = {1: 240, 4: 720, 24: 4320}      # hours one call may cover at 1 h, 4 h, 1 d periods
H = 3_600_000
ENV = dict(os.environ, HW_ACCESS_KEY="DEMOACCESSKEY0000001",
           HW_SECRET_KEY="demo-secret-key-for-the-built-in-simulator")
# The default limits are 25 s and 60 Cloud Eye calls a minute; raised so that every size can
# complete in one run (limits.max_series stays at its default, 2,000).
RAISED = "limits:\n  timeout: 600s\n  ces_requests_per_minute: 6000\n"
DAY = "last_24h"
MONTH_HOURLY = "{every: 1h, delay: 2h, backfill: 30d}"

def ms(iso):
    from datetime import datetime
    return int(datetime.fromisoformat(iso).timestamp() * 1000)

class Sim:
    def __init__(self, models, keys, now=NOW):
        self.log = f"{WORK}/ces-{models}x{keys}.jsonl"
        self.now = now
        self.p = subprocess.Popen(
            [BIN, "simulator", "--listen", "127.0.0.1:0", "--latency", f"{LATENCY_MS}ms",
             "--models", str(models), "--keys", str(keys), "--ips", str(4 * models),
             "--now", now, "--log", self.log],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
        self.url = self.p.stdout.readline().decode().strip()
        assert self.url.startswith("http://"), "the simulator did not start"
        self.models, self.keys = models, keys

    def spec(self, name, rng, limits):
        path = f"{WORK}/{name}.yaml"
        with open(path, "w") as f:
            f.write(f"apiVersion: maas-usage/v1\ncloud:\n  endpoint: {self.url}\n"
                    f"  ces_endpoint: {self.url}\n  project_id: {PROJECT}\n"
                    f"timezone: Asia/Shanghai\n{limits}queries:\n  - name: keys\n"
                    f"    source: cloud_eye\n    range: {rng}\n    breakdown: [model, api_key]\n")
        return path

    def cpu(self):
        """The simulator's CPU seconds so far (user + system)."""
        fields = open(f"/proc/{self.p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def run(self, spec, state):
        """One run: its figures, and the calls the simulator saw meanwhile."""
        open(self.log, "w").close()
        sim_cpu = self.cpu()
        out, timing = f"{WORK}/ce.out", f"{WORK}/ce.time"
        start = time.monotonic()
        with open(out, "wb") as o, open(f"{WORK}/ce.err", "wb") as e:
            rc = subprocess.run(["/usr/bin/time", "-v", "-o", timing, BIN, "run", "--spec", spec,
                                 "--now", self.now, "--state-dir", state], stdout=o, stderr=e,
                                env=ENV).returncode
        wall = time.monotonic() - start
        sim_cpu = self.cpu() - sim_cpu
        t = dict(l.strip().rsplit(": ", 1) for l in open(timing) if ": " in l)
        r = dict(rc=rc, wall=wall, sim_cpu=sim_cpu, rss=int(t["Maximum resident set size (kbytes)"]),
                 cpu=float(t["User time (seconds)"]) + float(t["System time (seconds)"]),
                 out_bytes=os.path.getsize(out), lines=0, series=set(), stamps=set(),
                 calls={"list": 0, "batch": 0, "names": 0}, failed=0, biggest=0, objects={},
                 capped=0)
        for line in open(out):
            if line.startswith("maas_model_usage,"):
                tags, _, stamp = line.rstrip("\n").rpartition(" ")
                r["lines"] += 1
                r["series"].add(re.sub(r" .*", "", tags))
                r["stamps"].add(stamp)
        for line in open(self.log):
            c = json.loads(line)
            kind = ("batch" if c["path"].endswith("/batch-query-metric-data") else
                    "names" if c["path"].endswith("/maas/monitor/instances") else
                    "list" if c["path"].endswith("/metrics") else c["path"])
            r["calls"][kind] = r["calls"].get(kind, 0) + 1
            r["failed"] += c["status"] != 200
            if kind == "batch":
                r["biggest"] = max(r["biggest"], c["bytes"])
                body = json.loads(c["body"])
                points = (body["to"] - body["from"]) // (int(body["period"]) * 1000)
                # A call past the caps would have `from` moved by the server: data lost.
                r["capped"] += len(body["metrics"]) > MAX_OBJECTS or len(body["metrics"]) * points > MAX_POINTS
                for m in body["metrics"]:
                    r["objects"].setdefault(body["filter"], set()).add(m["metric_name"])
        errors = [l.strip() for l in open(f"{WORK}/ce.err") if l.startswith("E! ")]
        # The reason of the first failure: what follows its subject.
        r["why"] = next((e.split("): ", 1)[-1] for e in errors if "): " in e), "")
        r["errors"] = len(errors)
        return r

    def close(self):
        self.p.kill()
        self.p.wait()

def fresh():
    fresh.n += 1
    return f"{WORK}/state-ce-{fresh.n}"
fresh.n = 0

def cheapest(objects, start_h, end_h, periods, whole=None):
    """The fewest calls that read `objects` metric objects of one filter over the hours
    [start_h, end_h) exactly: spans at periods of `periods` hours whose ends fall on them (only
    at the ends of `whole` buckets, when given), each of at most the server's window and 3,000
    datapoints, `min(500, 3000 / points)` objects a call. Dynamic programming over the hours."""
    n = end_h - start_h
    best = [0] + [math.inf] * n
    for j in range(1, n + 1):
        if whole is not None and (start_h + j) not in whole:
            continue
        for p in periods:
            if (start_h + j) % p:
                continue
            for length in range(p, min(j, SPAN_LIMIT_H[p]) + 1, p):
                i = j - length
                if (start_h + i) % p or best[i] == math.inf:
                    continue
                points = length // p
                per_call = min(MAX_OBJECTS, MAX_POINTS // points)
                if per_call == 0:
                    continue
                best[j] = min(best[j], best[i] + math.ceil(objects / per_call))
    return best[n]

def fewest(models, keys, metrics, start_ms, end_ms, bucket_ends=None):
    """The fewest calls the API allows: one metric listed (every SYS.MaaS series has every
    metric), the names in pages of 100, and per filter the cheapest cut of the window (the
    middle at the coarsest period its boundaries allow, 500 objects a call where the
    3,000-datapoint cap permits); period buckets whole, at hours."""
    listed = models * (keys + 1)
    start_h, end_h = start_ms // H, end_ms // H
    periods = (1,) if bucket_ends is not None else (1, 4, 24)
    whole = None if bucket_ends is None else {e // H for e in bucket_ends}
    batches = sum(cheapest(models * keys * len(names), start_h, end_h, periods, whole)
                  for names in metrics.values())
    return dict(list=math.ceil(listed / 1000), batch=batches, names=math.ceil(listed / 100))

def calls(c):
    return f"{c['list']} / {c['batch']} / {c['names']} ({sum(c.values())})"

def mib(kib):
    return f"{kib / 1024:.0f} MiB"

def bound(n):
    return math.ceil(n / CONCURRENCY) * LATENCY_MS / 1000

print(f"Per key, `last_24h`, limits raised (timeout 600 s, 6,000 Cloud Eye calls a minute); "
      f"wall and CPU: median of {RUNS}, peak RSS: the largest. `capped`: batch calls past 500 "
      f"objects or 3,000 datapoints (the server would move `from`: data lost).\n")
print("| models x keys | series | calls: list / batch / names (all) | fewest: list / batch / names (all) | capped | largest answer | wall | ceil(calls / 4) x 50 ms | CPU | simulator CPU | peak RSS | exit |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
def row(label, runs, few):
    r = runs[-1]
    made = sum(r["calls"].values())
    print(f"| {label} | {len(r['series'])} | {calls(r['calls'])} | {calls(few)} | {r['capped']} | "
          f"{r['biggest'] / 1e6:.2f} MB | {statistics.median(x['wall'] for x in runs):.2f} s | "
          f"{bound(made):.2f} s | {statistics.median(x['cpu'] for x in runs):.2f} s | "
          f"{statistics.median(x['sim_cpu'] for x in runs):.2f} s | {mib(max(x['rss'] for x in runs))} | "
          f"{', '.join(sorted({str(x['rc']) for x in runs}))} |")

for models, keys, now in [(3, 4, NOW), (25, 10, NOW), (100, 20, NOW), (100, 20, NOW_4H)]:
    sim = Sim(models, keys, now)
    label = f"{models} x {keys}" + (", on 4-hour boundaries" if now == NOW_4H else "")
    try:
        spec = sim.spec(f"ce-{models}x{keys}", DAY, RAISED)
        runs = [sim.run(spec, fresh()) for _ in range(RUNS)]
        end = ms(now)
        few = fewest(models, keys, runs[-1]["objects"], end - 24 * H, end)
        row(label, runs, few)
        if (models, keys) == (100, 20):
            # Discovery cached: every run on one state directory, after one that fills it.
            state = fresh()
            sim.run(spec, state)
            runs = [sim.run(spec, state) for _ in range(RUNS)]
            row(f"{label}, discovery cached", runs, dict(few, list=0, names=0))
    finally:
        sim.close()

print("\nThe same with the default limits (25 s, 60 Cloud Eye calls a minute), cold, then "
      "runs 61 s apart on the same state directory (discovery cached), as an agent runs them, "
      "until every series was delivered.\n")
print("| models x keys | run | series | distinct so far | calls: list / batch / names | wall | exit | E! lines | why a series failed |")
print("|---|---|---|---|---|---|---|---|---|")
for models, keys, now in [(3, 4, NOW), (25, 10, NOW), (100, 20, NOW), (100, 20, NOW_4H)]:
    sim = Sim(models, keys, now)
    label = f"{models} x {keys}" + (", on 4-hour boundaries" if now == NOW_4H else "")
    try:
        spec = sim.spec(f"ce-default-{models}x{keys}", DAY, "")
        state = fresh()
        seen, want = set(), models * keys
        for i in range(6):
            started = time.monotonic()
            r = sim.run(spec, state)
            seen |= r["series"]
            why = r["why"][:140] + ("..." if len(r["why"]) > 140 else "")
            print(f"| {label} | {'cold' if i == 0 else f'+{61 * i} s'} | {len(r['series'])} | "
                  f"{len(seen)} of {want} | {calls(r['calls'])} | {r['wall']:.1f} s | {r['rc']} | "
                  f"{r['errors']} | {why.replace('|', '/')} |")
            if len(seen) >= want:
                break
            time.sleep(max(0.0, 61 - (time.monotonic() - started)))
    finally:
        sim.close()

models, keys = 50, 20
sim = Sim(models, keys)
try:
    r = sim.run(sim.spec("ce-period", MONTH_HOURLY, RAISED), fresh())
finally:
    sim.close()
buckets = len(r["stamps"])
ends = sorted(int(s) // 1_000_000 for s in r["stamps"])
few = fewest(models, keys, r["objects"], ends[0] - H, ends[-1], ends)
print(f"\nPeriod mode, {MONTH_HOURLY} per key at {models} x {keys}, limits raised, one run:\n")
print("| lines (series x buckets) | calls: list / batch / names (all) | fewest | capped | wall | ceil(calls / 4) x 50 ms | CPU | simulator CPU | peak RSS | output | per line | exit |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| {r['lines']:,} ({len(r['series'])} x {buckets}) | {calls(r['calls'])} | {calls(few)} | {r['capped']} | "
      f"{r['wall']:.1f} s | {bound(sum(r['calls'].values())):.1f} s | {r['cpu']:.1f} s | {r['sim_cpu']:.1f} s | {mib(r['rss'])} | {r['out_bytes'] / 1e6:.0f} MB | "
      f"{r['out_bytes'] / max(r['lines'], 1):.0f} B | {r['rc']} |")
PY
}

# Period mode, 30 days hourly at 50 x 20 per key (limits raised), one run in each output that
# streams, each with a fresh state directory and its own simulator: peak RSS, CPU, wall,
# output; for the OTLP push (OTLP/HTTP protobuf to a loopback receiver that accepts
# everything), the requests and the largest.
period_formats() {
  python3 - "$BIN" <<'PY'
import os, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BIN = sys.argv[1]
NOW = "2026-05-21T10:00:00+08:00"
got = {}
class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        got["requests"] += 1
        got["bytes"] += n
        got["largest"] = max(got["largest"], n)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
rx = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=rx.serve_forever, daemon=True).start()
print("| output | peak RSS | CPU | wall | output | exit |")
print("|---|---|---|---|---|---|")
for fmt in ["influx", "prometheus", "json", "otlp-json", "otlp"]:
    got.update(requests=0, bytes=0, largest=0)
    work = tempfile.mkdtemp()
    sim = subprocess.Popen([BIN, "simulator", "--listen", "127.0.0.1:0", "--latency", "50ms",
                            "--models", "50", "--keys", "20", "--ips", "200", "--now", NOW],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    url = sim.stdout.readline().decode().strip()
    out = f"  format: otlp\n  otlp:\n    endpoint: http://127.0.0.1:{rx.server_address[1]}\n    protocol: http/protobuf\n" if fmt == "otlp" else f"  format: {fmt}\n"
    spec = f"{work}/spec.yaml"
    open(spec, "w").write(
        f"apiVersion: maas-usage/v1\ncloud:\n  endpoint: {url}\n  ces_endpoint: {url}\n"
        f"  project_id: 0123456789abcdef0123456789abcdef\ntimezone: Asia/Shanghai\n"
        f"limits:\n  timeout: 900s\n  ces_requests_per_minute: 6000\nqueries:\n  - name: keys\n"
        f"    source: cloud_eye\n    range: {{every: 1h, delay: 2h, backfill: 30d}}\n"
        f"    breakdown: [model, api_key]\noutput:\n{out}")
    started = time.monotonic()
    with open(f"{work}/out", "wb") as o:
        rc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", f"{work}/time", BIN, "run",
                             "--spec", spec, "--now", NOW, "--state-dir", f"{work}/state"],
                            stdout=o, stderr=subprocess.DEVNULL).returncode
    wall = time.monotonic() - started
    kib, user, system = open(f"{work}/time").read().split()[-3:]
    size = (f"{got['bytes'] / 1e6:,.0f} MB in {got['requests']} requests (largest {got['largest'] / 1e6:.1f} MB)"
            if fmt == "otlp" else f"{os.path.getsize(f'{work}/out') / 1e6:,.0f} MB")
    print(f"| {fmt} | {int(kib) / 1024:.0f} MiB | {float(user) + float(system):.1f} s | {wall:.1f} s | {size} | {rc} |")
    sim.kill()
    sim.wait()
    subprocess.run(["rm", "-rf", work])
PY
}

if [ "${1:-}" = period-formats ]; then
  period_formats
  exit 0
fi

if [ "${1:-}" = cloud-eye ]; then
  cloud_eye
  exit 0
fi

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

if [ -z "${1:-}" ]; then
  echo
  echo "### Cloud Eye at an organisation's scale"
  echo
  cloud_eye
fi
