#!/usr/bin/env bash
# Cluster measurements with the real binaries on loopback, as the cluster issue
# asks for them:
#   1. steady `ping`, `add` and `stats` through the streaming session, 32 in flight
#      spread over the 4 nodes of a cluster;
#   2. a 1 -> 4 commit at ring 64 with data in it: time until the ring is ready
#      with every transfer done, and whether every count was kept;
#   3. `add` throughput per interval while a 5th node joins.
# Usage: deploy/bench/cluster.sh [path/to/flavio]   (default: target/release/flavio)
# Every node it starts is stopped on exit. Bounded: a few tens of seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
F=${1:-target/release/flavio}
[ -x "$F" ] || { echo "no flavio binary at $F (cargo build --release first)" >&2; exit 2; }
DIR=$(mktemp -d /tmp/flavio-bench.XXXXXX)
BASE=${FLAVIO_BENCH_BASE_PORT:-12017}
export FLAVIO_COOKIE=bench-$RANDOM$RANDOM
unset FLAVIO_COOKIE_FILE FLAVIO_NODE
PIDS=()
cleanup() {
  # SIGTERM (a node stops within its 2 s grace), then SIGKILL what is left.
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

addr() { echo "127.0.0.1:$((BASE + 10 * ($1 - 1)))"; }
start() {
  RUST_LOG=warn "$F" serve --name "flavio$1@127.0.0.1" --listen "$(addr "$1")" \
    --data-dir "$DIR/dev$1" >"$DIR/node$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do "$F" health --node "$(addr "$1")" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "node $1 did not start" >&2; exit 1
}
# Cheap on purpose (no python): it runs in a loop next to the load it measures.
settled() {
  local s
  s=$("$F" admin ring-status --node "$(addr 1)" --output json)
  grep -q '"pending":\[\]' <<<"$s" && grep -q '"ring_ready":true' <<<"$s"
}
total() { "$F" stats --node "$(addr 1)" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_ops"])'; }
ok_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])'; }
now() { date +%s.%N; }

for i in 1 2 3 4; do start "$i"; done

echo "== 1 -> 4 commit at ring 64, with data"
OK=$("$F" bench --node "$(addr 1)" --op add --concurrency 32 --duration 3s --output json | ok_of)
echo "adds on the single node: $OK (total ops $(total))"
for i in 2 3 4; do "$F" admin cluster join "$(addr 1)" --node "$(addr "$i")"; done
"$F" admin cluster plan --node "$(addr 1)" | grep -E "Transfers resulting|transfers from"
T0=$(now)
"$F" admin cluster commit --node "$(addr 1)"
until settled; do sleep 0.02; done
T1=$(now)
echo "converged with all transfers done in $(python3 -c "print(round($T1 - $T0, 3))") s"
echo "total ops $(total), expected $((3 * OK))"
"$F" admin member-status --node "$(addr 1)"

N="--node $(addr 1) --also-node $(addr 2) --also-node $(addr 3) --also-node $(addr 4)"
echo "== steady, 32 in flight over 4 nodes"
# shellcheck disable=SC2086
"$F" bench $N --op ping --concurrency 32 --duration 10s
# shellcheck disable=SC2086
"$F" bench $N --op add --concurrency 32 --duration 10s
# shellcheck disable=SC2086
"$F" bench $N --op stats --concurrency 32 --duration 10s

echo "== add while a 5th node joins (throughput every 500 ms; commit at about t=3 s)"
start 5
"$F" admin cluster join "$(addr 1)" --node "$(addr 5)"
# shellcheck disable=SC2086
"$F" bench $N --op add --concurrency 32 --duration 8s --report-every 500ms >"$DIR/during.txt" &
BENCH=$!
sleep 3
"$F" admin cluster plan --node "$(addr 1)" | grep -E "Transfers resulting" || true
T0=$(now)
"$F" admin cluster commit --node "$(addr 1)"
# Polled gently: each poll is a process, and this loop shares the 2 cores
# with the load being measured.
until settled; do sleep 0.25; done
T1=$(now)
wait "$BENCH"
echo "join's handoff done in $(python3 -c "print(round($T1 - $T0, 3))") s after the commit"
cat "$DIR/during.txt"
