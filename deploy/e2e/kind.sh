#!/usr/bin/env bash
# End-to-end test on a real Kubernetes cluster made with kind (or k3d), for
# users with a container runtime: it cannot run on our CI machines (no image
# pulls, no container networks), where CI only checks its syntax and lints
# it (bash -n, shellcheck).
#
#   deploy/e2e/kind.sh            # kind (default)
#   E2E_TOOL=k3d deploy/e2e/kind.sh
#
# Creates a cluster, builds and loads both images, installs the chart,
# applies the example FlavioCluster (4 members, ring 64), waits for it to be
# Available, runs ping/add/stats through `kubectl exec`, scales 4 -> 6 -> 3
# with `kubectl scale fc`, checks after every step that no acknowledged add
# was lost, and deletes the cluster (unless KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/../.."

tool="${E2E_TOOL:-kind}"
name="${E2E_CLUSTER:-flavio-e2e}"
ns=flavio-system
fc=demo
version="$(sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/flavio/Chart.yaml)"
node_image="flaviodb/flavio:$version"
operator_image="flaviodb/flavio-operator:$version"
docker="${DOCKER:-docker}"

log() { printf '\n==> %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

cleanup() {
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "KEEP=1: cluster $name left running"
    return
  fi
  log "deleting cluster $name"
  case "$tool" in
    kind) kind delete cluster --name "$name" || true ;;
    k3d) k3d cluster delete "$name" || true ;;
  esac
}

for cmd in "$tool" kubectl helm "$docker"; do
  command -v "$cmd" >/dev/null || fail "$cmd is not installed"
done

log "creating $tool cluster $name"
case "$tool" in
  kind) kind create cluster --name "$name" --wait 120s ;;
  k3d) k3d cluster create "$name" --wait ;;
  *) fail "E2E_TOOL must be kind or k3d" ;;
esac
trap cleanup EXIT

log "building and loading images"
"$docker" build -f deploy/images/node.Dockerfile -t "$node_image" .
"$docker" build -f deploy/images/operator.Dockerfile -t "$operator_image" .
case "$tool" in
  kind) kind load docker-image --name "$name" "$node_image" "$operator_image" ;;
  k3d) k3d image import --cluster "$name" "$node_image" "$operator_image" ;;
esac

log "helm install (operator only), then the example cluster"
helm install flavio charts/flavio --namespace "$ns" --create-namespace --wait \
  --set operator.image.pullPolicy=Never
kubectl -n "$ns" apply -f deploy/examples/flaviocluster.yaml

# Waits until the FlavioCluster is Available with $1 ready members.
wait_available() {
  local want="$1" deadline=$((SECONDS + 600)) ready avail members
  while ((SECONDS < deadline)); do
    ready="$(kubectl -n "$ns" get fc "$fc" -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)"
    avail="$(kubectl -n "$ns" get fc "$fc" \
      -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null || true)"
    members="$(kubectl -n "$ns" get fc "$fc" -o jsonpath='{.status.memberCount}' 2>/dev/null || true)"
    if [[ "$ready" == "$want" && "$members" == "$want" && "$avail" == True ]]; then
      kubectl -n "$ns" get fc "$fc"
      return 0
    fi
    sleep 5
  done
  kubectl -n "$ns" get fc "$fc" -o yaml >&2 || true
  fail "FlavioCluster $fc did not become Available with $want members"
}

# Runs flavio in pod 0 the way a user would: no flags, the pod's env only.
in_pod() { kubectl -n "$ns" exec "$fc-0" -- flavio "$@"; }

# The total of the stats coverage query ("Total: N ops in M vnodes").
total_ops() { in_pod stats | sed -n 's/^Total: \([0-9]*\) ops.*/\1/p'; }

log "waiting for 4 members"
wait_available 4
in_pod ping | grep -q '^pong ' || fail "kubectl exec flavio ping"
[[ "$(in_pod add 2 5 | head -n 1)" == 7 ]] || fail "kubectl exec flavio add 2 5"
in_pod admin member-status

# Each acknowledged add is counted once by each of its N=3 replicas.
adds=1
for i in $(seq 1 50); do in_pod add "$i" "$i" >/dev/null; adds=$((adds + 1)); done
check_counts() {
  local total
  total="$(total_ops)"
  [[ "$total" == $((3 * adds)) ]] || fail "stats total $total, expected $((3 * adds)) (3 x $adds adds)"
  echo "stats total $total = 3 x $adds acknowledged adds"
}
check_counts

for replicas in 6 3; do
  log "kubectl scale fc $fc --replicas $replicas"
  kubectl -n "$ns" scale fc "$fc" --replicas "$replicas"
  wait_available "$replicas"
  pods="$(kubectl -n "$ns" get pods -l "app.kubernetes.io/instance=$fc" --no-headers | wc -l)"
  [[ "$pods" == "$replicas" ]] || fail "$pods pods, expected $replicas"
  check_counts
  in_pod admin member-status
done

log "helm uninstall"
kubectl -n "$ns" delete -f deploy/examples/flaviocluster.yaml --wait
helm uninstall flavio --namespace "$ns" --wait
echo "e2e passed"
