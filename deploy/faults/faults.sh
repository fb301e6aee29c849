#!/usr/bin/env bash
# Fault injection on real FlavioDB processes: network partitions (iptables
# rules between the nodes' loopback addresses), pauses (SIGSTOP / SIGCONT)
# and kill -9 (the node is started again with its own command line), all
# under `flavio bench` load; then heal and check what the simulator checks:
# every node on one ring with nothing pending, the counts exact
# (3 x acknowledged adds <= stats total <= 3 x all adds), and no node dead
# except the killed ones, which run again.
#
# Usage:
#   deploy/faults/faults.sh [--nodes 5] [--duration 150] [--bin target/release/flavio]
#       starts its own cluster of N nodes on 127.0.0.2, 127.0.0.3, ... (port
#       FLAVIO_FAULTS_PORT, default 14017), runs the faults, checks, and stops
#       every node it started.
#   deploy/faults/faults.sh --attach HOST:PORT [--duration 150] [--bin ...]
#       the same against a running cluster that the node at HOST:PORT belongs
#       to, e.g. `flavio devrel --nodes 5 --spread-hosts`: every node must
#       listen on its own address (links are cut by address) and run on this
#       host (it is paused and killed by pid). FLAVIO_COOKIE or
#       FLAVIO_COOKIE_FILE must give the cluster's cookie. Killed nodes are
#       started again in the background, logging to their old log's place
#       (stdout and stderr go to DIR/node-restart.log of this run).
#
# The schedule, spread over --duration seconds (at least 90): 3 partitions
# (a 2/3 split with the claimant on the small side, another split, one node
# cut off), 2 pauses of 4 s, 2 kills. Every rule it adds is in its own
# iptables chain, FLAVIO_FAULTS, removed on exit (also on failure or Ctrl-C),
# as is every pause.
#
# Needs root (iptables) and iptables itself: without them it fails loudly
# with the reason, it never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."

NODES=5
DURATION=150
F=target/release/flavio
ATTACH=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --bin) F=$2; shift 2 ;;
    --attach) ATTACH=$2; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "faults.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
fail() { echo "faults.sh: FAILED: $*" >&2; exit 1; }
[ -x "$F" ] || { echo "faults.sh: no flavio binary at $F (cargo build --release first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || fail "needs root to add iptables rules between the nodes' addresses (run it as root; CI does)"
command -v iptables >/dev/null || fail "needs iptables (apt-get install iptables)"
iptables -L INPUT -n >/dev/null 2>&1 || fail "iptables does not work here: $(iptables -L INPUT -n 2>&1 | head -1)"
[ "$DURATION" -ge 90 ] || fail "--duration must be at least 90 s to fit the schedule"
[ "$NODES" -ge 5 ] || [ -n "$ATTACH" ] || fail "--nodes must be at least 5 (a 2/3 split)"

DIR=$(mktemp -d /tmp/flavio-faults.XXXXXX)
CHAIN=FLAVIO_FAULTS
declare -a PID ADDR CMD CWD ENVF
STARTED=()   # pids this run started (its own cluster, restarted nodes)
PAUSED=()
BENCH=""

cleanup() {
  set +e
  for p in "${PAUSED[@]}"; do kill -CONT "$p" 2>/dev/null; done
  iptables -D INPUT -j "$CHAIN" 2>/dev/null
  iptables -F "$CHAIN" 2>/dev/null
  iptables -X "$CHAIN" 2>/dev/null
  [ -n "$BENCH" ] && kill "$BENCH" 2>/dev/null
  if [ -z "$ATTACH" ]; then
    for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null; done
    sleep 2
    for p in "${STARTED[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$DIR"
  else
    echo "faults.sh: logs of this run in $DIR"
    [ ${#STARTED[@]} -eq 0 ] || echo "faults.sh: nodes started again by this run (not children of your devrel; stop them by pid when done): ${STARTED[*]}"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
log() { printf '%7.1f s  %s\n' "$(python3 -c "print($(now) - ${T0:-$(now)})")" "$*"; }

# ----- the cluster ------------------------------------------------------
if [ -z "$ATTACH" ]; then
  PORT=${FLAVIO_FAULTS_PORT:-14017}
  export FLAVIO_COOKIE=faults-$RANDOM$RANDOM
  unset FLAVIO_COOKIE_FILE FLAVIO_NODE
  for i in $(seq 1 "$NODES"); do ADDR[$i]="127.0.0.$((i + 1)):$PORT"; done
  start_own() {
    local i=$1
    RUST_LOG=warn "$F" serve --name "flavio$i@127.0.0.$((i + 1))" --listen "${ADDR[$i]}" \
      --data-dir "$DIR/dev$i" >>"$DIR/node$i.log" 2>&1 &
    PID[$i]=$!
    STARTED+=("$!")
    disown "$!"  # no job-control notice when it is killed on purpose
  }
  for i in $(seq 1 "$NODES"); do start_own "$i"; done
  for i in $(seq 1 "$NODES"); do
    for _ in $(seq 1 100); do "$F" health --node "${ADDR[$i]}" >/dev/null 2>&1 && break; sleep 0.1; done
    "$F" health --node "${ADDR[$i]}" >/dev/null 2>&1 || fail "node $i did not start (see $DIR/node$i.log)"
  done
  for i in $(seq 2 "$NODES"); do "$F" admin cluster join "${ADDR[1]}" --node "${ADDR[$i]}" >/dev/null; done
  "$F" admin cluster plan --node "${ADDR[1]}" >/dev/null
  "$F" admin cluster commit --node "${ADDR[1]}" >/dev/null
else
  # Every member of the cluster of the node at $ATTACH, and the pid that
  # listens on its port.
  i=0
  while read -r addr; do
    i=$((i + 1))
    ADDR[$i]=$addr
    port=${addr##*:}
    pid=$(ss -Htlnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    [ -n "$pid" ] || fail "no process listens on $addr on this host"
    PID[$i]=$pid
  done < <("$F" admin member-status --node "$ATTACH" --output json |
    python3 -c 'import json,sys; [print(m["addr"]) for m in json.load(sys.stdin)["members"] if m["state"] == "valid"]')
  NODES=$i
  [ "$NODES" -ge 5 ] || fail "the cluster at $ATTACH has $NODES valid members; a 2/3 split needs 5"
  hosts=$(for j in $(seq 1 "$NODES"); do echo "${ADDR[$j]%:*}"; done | sort -u | wc -l)
  [ "$hosts" = "$NODES" ] || fail "the nodes share addresses; start them on distinct ones (flavio devrel --spread-hosts)"
fi
# How to start each node again after a kill: its own command line, working
# directory and environment.
for i in $(seq 1 "$NODES"); do
  p=${PID[$i]}
  CMD[$i]=$DIR/cmd$i; tr '\0' '\n' <"/proc/$p/cmdline" >"${CMD[$i]}"
  CWD[$i]=$(readlink "/proc/$p/cwd")
  ENVF[$i]=$DIR/env$i; cp "/proc/$p/environ" "${ENVF[$i]}"
done

settled() {
  local s
  s=$("$F" admin ring-status --node "${ADDR[1]}" --output json 2>/dev/null) || return 1
  grep -q '"pending":\[\]' <<<"$s" && grep -q '"ring_ready":true' <<<"$s"
}
wait_settled() {
  local within=$1 t=$SECONDS
  until settled; do
    [ $((SECONDS - t)) -lt "$within" ] || return 1
    sleep 0.5
  done
}
wait_settled 120 || fail "the cluster did not settle before the faults"
echo "faults.sh: $NODES nodes settled (${ADDR[*]}); $DURATION s of adds with faults; work dir $DIR"

# ----- faults -------------------------------------------------------------
iptables -N "$CHAIN" 2>/dev/null || iptables -F "$CHAIN"
iptables -C INPUT -j "$CHAIN" 2>/dev/null || iptables -I INPUT -j "$CHAIN"
host() { echo "${ADDR[$1]%:*}"; }
# split "1 2" "3 4 5": no packet between the two groups, either way.
split() {
  local a b
  for a in $1; do for b in $2; do
    iptables -A "$CHAIN" -s "$(host "$a")" -d "$(host "$b")" -j DROP
    iptables -A "$CHAIN" -s "$(host "$b")" -d "$(host "$a")" -j DROP
  done; done
  log "partition {$1} / {$2}"
}
heal() { iptables -F "$CHAIN"; log "healed"; }
pause() {
  kill -STOP "${PID[$1]}"; PAUSED+=("${PID[$1]}"); log "node $1 paused (SIGSTOP)"
  sleep "$2"
  kill -CONT "${PID[$1]}"; log "node $1 resumed (SIGCONT)"
}
KILLED=()
kill9() {
  local i=$1
  kill -9 "${PID[$i]}"; log "node $i killed (kill -9)"
  KILLED+=("$i")
  sleep "$2"
  ( cd "${CWD[$i]}" && mapfile -t argv <"${CMD[$i]}" && mapfile -d '' -t envv <"${ENVF[$i]}" &&
    exec env -i "${envv[@]}" "${argv[@]}" ) >>"$DIR/node$i-restart.log" 2>&1 &
  PID[$i]=$!
  STARTED+=("$!")
  disown "$!"
  for _ in $(seq 1 100); do "$F" health --node "${ADDR[$i]}" >/dev/null 2>&1 && break; sleep 0.1; done
  "$F" health --node "${ADDR[$i]}" >/dev/null 2>&1 || fail "node $i did not start again (see $DIR/node$i-restart.log)"
  log "node $i started again (pid ${PID[$i]})"
}
claimant_index() {
  local c
  c=$("$F" admin ring-status --node "${ADDR[1]}" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["claimant"])')
  for j in $(seq 1 "$NODES"); do
    "$F" admin member-status --node "${ADDR[$j]}" --output json 2>/dev/null |
      python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["node"] == sys.argv[1] else 1)' "$c" && { echo "$j"; return; }
  done
  echo 1
}
# The minority side may change nothing: a `down` of a majority node from it
# must be refused, and the refusal must say why.
minority_refused() {
  local at=$1 target=$2 out name
  name=$("$F" admin member-status --node "${ADDR[$target]}" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])')
  if out=$("$F" admin down "$name" --node "${ADDR[$at]}" 2>&1); then
    fail "node $at, on the minority side, marked $name down: $out"
  fi
  grep -q "majority" <<<"$out" || fail "the minority's refusal does not name the majority: $out"
  log "minority node $at may not mark $name down: refused ($(head -c 120 <<<"$out")...)"
}

ALSO=()
for i in $(seq 2 "$NODES"); do ALSO+=(--also-node "${ADDR[$i]}"); done
"$F" bench --node "${ADDR[1]}" "${ALSO[@]}" --op add --n 3 --w 3 --concurrency 16 \
  --duration "${DURATION}s" --output json >"$DIR/bench.json" 2>"$DIR/bench.err" &
BENCH=$!
T0=$(now)
# Eight steps, and about 20 s of pauses, kills and commands between them.
step=$(((DURATION - 20) / 8))

C=$(claimant_index)
others=$(for j in $(seq 1 "$NODES"); do [ "$j" = "$C" ] || echo "$j"; done)
mate=$(head -1 <<<"$others")
rest=$(tail -n +2 <<<"$others" | tr '\n' ' ')
sleep "$step"
split "$C $mate" "$rest"
sleep 3
minority_refused "$C" "$(awk '{print $1}' <<<"$rest")"
# The majority side may: it marks the cut-off claimant down and one of its
# own takes the role, in a new epoch. After healing, every node must agree
# (the checks below), and the old claimant is marked up again.
M=$(awk '{print $1}' <<<"$rest")
CNAME=$("$F" admin member-status --node "${ADDR[$C]}" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])')
out=$("$F" admin down "$CNAME" --node "${ADDR[$M]}" 2>&1) || fail "the majority could not mark the cut-off claimant $CNAME down: $out"
log "majority node $M marked the claimant $CNAME down: $out"
sleep $((step - 3))
heal
sleep "$step"
pause 2 4
sleep "$step"
kill9 3 2
sleep "$step"
split "1 4" "2 3 5"
sleep "$step"
heal
pause 5 4
sleep "$step"
split "$NODES" "$(seq 1 $((NODES - 1)) | tr '\n' ' ')"
sleep "$step"
heal
kill9 4 1
wait "$BENCH" || { cat "$DIR/bench.err" >&2; fail "flavio bench failed"; }
BENCH=""
log "load done"

# ----- checks -------------------------------------------------------------
wait_settled 180 || { "$F" admin member-status --node "${ADDR[1]}" >&2; fail "the cluster did not settle within 180 s of healing"; }
# Hinted handoff done: no fallback data held anywhere.
for _ in $(seq 1 120); do
  "$F" admin transfers --node "${ADDR[1]}" --output json |
    python3 -c 'import json,sys; t=json.load(sys.stdin); sys.exit(0 if not t["waiting"] and not t["active"] else 1)' && break
  sleep 0.5
done
for i in $(seq 1 "$NODES"); do
  kill -0 "${PID[$i]}" 2>/dev/null || fail "node $i (pid ${PID[$i]}) is not running after the run (see $DIR)"
done
python3 - "$DIR/bench.json" "$NODES" "$F" "${ADDR[@]:1}" <<'PY' || fail "checks failed (work dir $DIR)"
import json, subprocess, sys
bench = json.load(open(sys.argv[1]))
n, flavio, addrs = int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def cli(*a):
    return json.loads(subprocess.run([flavio, *a, "--output", "json"], check=True,
                                     capture_output=True, text=True).stdout)
claimants = set()
rings = set()
for a in addrs[:n]:
    m = cli("admin", "member-status", "--node", a)
    rings.add((m["ring_version"], m["claimant"],
               tuple(sorted((x["name"], x["state"]) for x in m["members"]))))
    claimants.add(m["claimant"])
    down = [x["name"] for x in m["members"] if x["state"] != "valid"]
print(f"rings held by the {n} nodes: {len(rings)} distinct; claimant {sorted(claimants)}; not valid: {down}")
ok = len(rings) == 1
stats = cli("stats", "--node", addrs[0])
acked, failed, total = bench["ok"], bench["errors"], stats["total_ops"]
exact = 3 * acked <= total <= 3 * (acked + failed) and not stats["partial"]
print(f"adds acknowledged {acked}, failed {failed}; stats total {total}: "
      f"{'exact' if exact else 'WRONG'} (3 x {acked} <= total <= 3 x {acked + failed})")
failing = [x["second"] for x in bench.get("timeline", []) if x["errors"]]
print(f"seconds with a failed add: {failing}")
sys.exit(0 if ok and exact else 1)
PY
echo "faults.sh: passed: 3 partitions, 2 pauses, 2 kills (nodes ${KILLED[*]} restarted); one ring, counts exact, every node running"
