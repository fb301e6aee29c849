#!/bin/bash
# Mutation check of the simulator: breaks the handoff receiver on purpose,
# one way at a time, and runs the simulator (scenario scripts and seeded
# runs) against each break. Both must be caught; the source is restored
# whatever happens. Usage: node/tests/sim/mutations.sh [SEEDS] (default 1000).
# Prints, for each mutation, the scripts and seeds that caught it.
set -euo pipefail
cd "$(dirname "$0")/../../.."
seeds=${1:-1000}
file=node/src/cluster/handoff/receiver.rs
keep=$(mktemp)
cp "$file" "$keep"
trap 'cp "$keep" "$file"; rm -f "$keep"' EXIT

mutate() {
    python3 - "$file" "$1" <<'PY'
import sys
path, which = sys.argv[1], sys.argv[2]
s = open(path).read()
marker = """                put_marker(c.store(), p, start.session)?;"""
ack = """                out.send(Ok(HandoffAck::Finished(got)))
                    .await
                    .map_err(|_| gone())?;"""
barrier = """                c.master().barrier(p).await?;
"""
if which == "skip-marker":
    assert marker in s
    s = s.replace(marker, "                let _ = (put_marker, start.session); // MUTATION")
elif which == "ack-before-durable":
    old = barrier + marker + "\n" + ack
    assert old in s, "receiver changed: update mutations.sh"
    s = s.replace(old, ack + "\n" + barrier + marker)
open(path, "w").write(s)
PY
}

status=0
for m in skip-marker ack-before-durable; do
    cp "$keep" "$file"
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
