#!/bin/bash
# Mutation check of the simulator: breaks the code on purpose, one way at a
# time, and runs the simulator (scenario scripts and seeded runs) against
# each break. Every break must be caught; the sources are restored whatever
# happens. Usage: node/tests/sim/mutations.sh [SEEDS] [MUTATION ...]
# (default 1000 seeds, every mutation). Prints, for each mutation, the
# scripts and seeds that caught it.
#   skip-marker         the handoff receiver never writes its completion marker
#   ack-before-durable  the receiver acknowledges Finish before its barrier and marker
#   no-join             rings are not joined: the higher version wins whole (the
#                       order before ring stamps)
#   minority-writes     no majority is asked for: any side of a partition may
#                       down, plan, commit and flip
set -euo pipefail
cd "$(dirname "$0")/../../.."
seeds=${1:-1000}
shift || true
mutations=("$@")
[ ${#mutations[@]} -gt 0 ] || mutations=(skip-marker ack-before-durable no-join minority-writes)
files=(node/src/cluster/handoff/receiver.rs node/src/cluster/state.rs node/src/cluster/manager.rs)
keep=$(mktemp -d)
for f in "${files[@]}"; do cp "$f" "$keep/$(basename "$f")"; done
restore() { for f in "${files[@]}"; do cp "$keep/$(basename "$f")" "$f"; done; }
trap 'restore; rm -rf "$keep"' EXIT

mutate() {
    python3 - "$1" <<'PY'
import sys
which = sys.argv[1]
def edit(path, old, new):
    s = open(path).read()
    assert old in s, f"{path} changed: update mutations.sh ({which})"
    open(path, "w").write(s.replace(old, new))
receiver = "node/src/cluster/handoff/receiver.rs"
marker = """                put_marker(c.store(), p, start.session)?;"""
ack = """                out.send(Ok(HandoffAck::Finished(got)))
                    .await
                    .map_err(|_| gone())?;"""
barrier = """                c.master().barrier(p).await?;
"""
if which == "skip-marker":
    edit(receiver, marker, "                let _ = (put_marker, start.session); // MUTATION")
elif which == "ack-before-durable":
    edit(receiver, barrier + marker + "\n" + ack, ack + "\n" + barrier + marker)
elif which == "no-join":
    edit("node/src/cluster/state.rs", "    let joined = join(mine, theirs);",
         "    let joined = if theirs.version > mine.version { theirs.clone() } else { mine.clone() }; // MUTATION")
elif which == "minority-writes":
    m = "node/src/cluster/manager.rs"
    edit(m, "        majority::check(&self.ring().ring, &self.inner.me, action, &answers)",
         "        let _ = (action, answers); // MUTATION\n        Ok(())")
    edit(m, "        if !self.sees_majority() {\n            return Err(Error::Busy(",
         "        if false {\n            return Err(Error::Busy(")
else:
    sys.exit(f"unknown mutation {which}")
PY
}

status=0
for m in "${mutations[@]}"; do
    restore
    mutate "$m"
    echo "== mutation: $m"
    out=$(SIM_SEEDS=$seeds cargo test --release -p flavio-node --test sim 2>&1 || true)
    caught=$(echo "$out" | grep -E "transcript differs|^seed [0-9]+: " | grep -v "adds acknowledged" | cut -c1-160 || true)
    if [ -z "$caught" ]; then
        echo "NOT CAUGHT"
        status=1
    else
        echo "$caught"
    fi
done
exit $status
