#!/usr/bin/env bash
# One-node measurements with the real binary on loopback: steady `ping`, `add`
# and `stats` through the streaming session, 32 in flight, 10 s each (the
# 1-node figures the core issue asks for before and after a change).
# Usage: deploy/bench/node.sh [path/to/flavio]   (default: target/release/flavio)
# The node it starts is stopped on exit. Bounded: about 35 seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
F=${1:-target/release/flavio}
[ -x "$F" ] || { echo "no flavio binary at $F (cargo build --release first)" >&2; exit 2; }
DIR=$(mktemp -d /tmp/flavio-bench.XXXXXX)
ADDR=127.0.0.1:${FLAVIO_BENCH_BASE_PORT:-12117}
export FLAVIO_COOKIE=bench-$RANDOM$RANDOM
unset FLAVIO_COOKIE_FILE FLAVIO_NODE
PID=
cleanup() {
  # SIGTERM (a node stops within its 2 s grace), then SIGKILL if still there.
  if [ -n "$PID" ]; then
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT

RUST_LOG=warn "$F" serve --name "flavio1@127.0.0.1" --listen "$ADDR" \
  --data-dir "$DIR/dev1" >"$DIR/node1.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do "$F" health --node "$ADDR" >/dev/null 2>&1 && break; sleep 0.1; done
"$F" health --node "$ADDR" >/dev/null || { echo "the node did not start" >&2; exit 1; }

echo "== steady, 32 in flight on 1 node"
for op in ping add stats; do
  "$F" bench --node "$ADDR" --op "$op" --concurrency 32 --duration 10s
done
