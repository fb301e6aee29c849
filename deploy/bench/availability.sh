#!/usr/bin/env bash
# Availability measurements with the real binaries on loopback, as the
# availability issue asks for them: a 4-node cluster at ring 64, `flavio bench`
# adding (N=3, W=3) with 32 in flight spread over nodes 1-3 for 40 s; node 4 is
# killed (kill -9, or SIGTERM with --term) at t=10 s and started again at t=30 s.
# Prints the bench timeline, the steady add rate, the rate while node 4 is down,
# how long adds failed after the kill, how long after the restart every hint
# was handed off, and whether the counts are exact.
# Usage: deploy/bench/availability.sh [--term] [path/to/flavio]
#        (default binary: target/release/flavio)
# Every node it starts is stopped on exit. Bounded: about a minute and a half.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIG=KILL
if [ "${1:-}" = "--term" ]; then SIG=TERM; shift; fi
F=${1:-target/release/flavio}
[ -x "$F" ] || { echo "no flavio binary at $F (cargo build --release first)" >&2; exit 2; }
DIR=$(mktemp -d /tmp/flavio-avail.XXXXXX)
BASE=${FLAVIO_BENCH_BASE_PORT:-13017}
export FLAVIO_COOKIE=bench-$RANDOM$RANDOM
unset FLAVIO_COOKIE_FILE FLAVIO_NODE
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 3
  for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

addr() { echo "127.0.0.1:$((BASE + 10 * ($1 - 1)))"; }
start() {
  RUST_LOG=warn "$F" serve --name "flavio$1@127.0.0.1" --listen "$(addr "$1")" \
    --data-dir "$DIR/dev$1" >>"$DIR/node$1.log" 2>&1 &
  PID[$1]=$!
  for _ in $(seq 1 100); do "$F" health --node "$(addr "$1")" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "node $1 did not start" >&2; exit 1
}
settled() {
  local s
  s=$("$F" admin ring-status --node "$(addr 1)" --output json)
  grep -q '"pending":\[\]' <<<"$s" && grep -q '"ring_ready":true' <<<"$s"
}
now() { date +%s.%N; }

for i in 1 2 3 4; do start "$i"; done
for i in 2 3 4; do "$F" admin cluster join "$(addr 1)" --node "$(addr "$i")" >/dev/null; done
"$F" admin cluster plan --node "$(addr 1)" >/dev/null
"$F" admin cluster commit --node "$(addr 1)" >/dev/null
until settled; do sleep 0.1; done
echo "4 nodes settled; adds over nodes 1-3 for 40 s; node 4 gets SIG$SIG at t=10 s, starts again at t=30 s"

"$F" bench --node "$(addr 1)" --also-node "$(addr 2)" --also-node "$(addr 3)" \
  --op add --concurrency 32 --duration 40s --output json >"$DIR/bench.json" &
BENCH=$!
T0=$(now)
sleep 10
TK=$(now)
kill -"$SIG" "${PID[4]}"
wait "${PID[4]}" 2>/dev/null || true
sleep $(python3 -c "print(max(0, 30 - ($(now) - $T0)))")
TR=$(now)
start 4
# Hints handed off: no node holds fallback data, nothing is being sent.
until "$F" admin transfers --node "$(addr 1)" --output json |
  python3 -c 'import json,sys; t=json.load(sys.stdin); sys.exit(0 if not t["waiting"] and not t["active"] and not t["unreachable"] else 1)'; do
  sleep 0.05
done
TH=$(now)
wait "$BENCH"
STATS=$("$F" stats --node "$(addr 1)" --output json)
python3 - "$DIR/bench.json" "$T0" "$TK" "$TR" "$TH" "$STATS" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
t0, tk, tr, th = map(float, sys.argv[2:6])
stats = json.loads(sys.argv[6])
rows = b["timeline"]
k, r = int(tk - t0), int(tr - t0)
def rate(lo, hi):
    xs = [x["ok"] for x in rows if lo <= x["second"] < hi]
    return sum(xs) / len(xs) if xs else 0.0
print("second        ok  errors")
for x in rows:
    print(f'{x["second"]:>6}  {x["ok"]:>8}  {x["errors"]:>6}')
failing = [x["second"] for x in rows if x["errors"]]
steady, down = rate(1, k), rate(k + 3, r)
print(f'acknowledged {b["ok"]}, failed {b["errors"]}; seconds with a failed add: {failing}')
print(f"steady {steady:.0f} adds/s; node 4 down {down:.0f} adds/s ({100 * down / steady:.0f}% of steady)")
if failing:
    print(f"adds failed until {failing[-1] + 1 - (tk - t0):.1f} s after the kill (whole seconds of the timeline)")
else:
    print("no add failed")
print(f"every hint handed off {th - tr:.2f} s after node 4 started again")
total, ok, err = stats["total_ops"], b["ok"], b["errors"]
exact = 3 * ok <= total <= 3 * (ok + err) and not stats["partial"]
print(f"stats total {total} for {ok} acknowledged and {err} failed adds: {'exact' if exact else 'WRONG'}")
sys.exit(0 if exact else 1)
PY
