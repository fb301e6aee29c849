#!/usr/bin/env bash
# CI for the Kubernetes test environment: build (or reuse) the control plane,
# start it, run the stand-in acceptance tests and the StatefulSet smoke test
# against it, and always stop it again. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n==> testenv ci: %s\n' "$*"; }
T0=$SECONDS

step "control plane: build or reuse (deploy/testenv/build.sh)"
t=$SECONDS
bash deploy/testenv/build.sh
echo "control plane ready after $((SECONDS - t))s"

step "build flavio and the kubelet stand-in"
cargo build --locked -p flavio-node --bin flavio -p flavio-testenv --bin flavio-kubelet

trap 'step "testenv down"; bash deploy/testenv/testenv down || true' EXIT
step "testenv up"
t=$SECONDS
bash deploy/testenv/testenv up
echo "environment up after $((SECONDS - t))s"

export KUBECONFIG="${FLAVIO_TESTENV_DIR:-/tmp/flavio-testenv}/kubeconfig"
if command -v kubectl >/dev/null; then
  step "kubectl get nodes,pods -A"
  kubectl get nodes,pods -A -o wide
fi

step "stand-in acceptance tests and smoke test (FLAVIO_TESTENV=required)"
FLAVIO_TESTENV=required cargo test --locked -p flavio-testenv -- --nocapture

step "done in $((SECONDS - T0))s"
