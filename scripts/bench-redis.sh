#!/usr/bin/env bash
# The cost of the fleet's coordination in Redis (docs/operations.md, "A fleet: Redis"): the
# budget script (two windows: an identity's and its account's) as a call slot costs it, and the
# memory of a full window of 200 slots; then the whole call slot as a run takes it (the redis
# crate's client, plain and over TLS with a private CA): `cargo bench --bench fleet`.
# One command: scripts/bench-redis.sh (FLEET_BENCH=0 skips the cargo bench).
# Needs: redis-server, redis-cli and redis-benchmark (Debian's redis-server and redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-16399}
WORK=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --dir "$WORK" >/dev/null 2>&1 &
PID=$!
# Waited for, so that the next run can have the port.
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
# The script exactly as src/state/fleet/budget.rs has it.
TAKE=$(sed -n '/^const TAKE: &str = r"/,/^";/p' src/state/fleet/budget.rs | sed '1d;$d')
echo "budget script, 2 windows, one client on loopback (ms):"
redis-benchmark -p "$PORT" -n 20000 -c 1 EVAL "$TAKE" 2 maas-usage:budget:a maas-usage:budget:b \
  62000 __rand_int__ 1000000 1000000 2>/dev/null | grep -A2 "latency summary" | tail -2
for i in $(seq 200); do
  echo "ZADD maas-usage:budget:0123456789abcdef $((1700000000000 + i)) 12345-$i-1765012345678901234"
done | redis-cli -p "$PORT" >/dev/null
echo "a window of 200 slots: $(redis-cli -p "$PORT" MEMORY USAGE maas-usage:budget:0123456789abcdef) bytes"
if [ "${FLEET_BENCH:-1}" != 0 ]; then
  echo "a call slot as a run takes it (the redis crate, EVALSHA, two windows), loopback:"
  cargo bench --locked -q --bench fleet 2>/dev/null
fi
