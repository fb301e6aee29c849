#!/usr/bin/env bash
# The whole install, for real, on the test environment (issue 4, item 7):
# the real kube-apiserver 1.20 and controller-manager of deploy/testenv, with
# the kubelet stand-in running the operator pod (in-cluster config from its
# service-account token) and the node pods as host processes.
#
#   1. helm install charts/flavio with the example cluster enabled; the
#      FlavioCluster becomes Available; ping/add/stats/member-status work
#      through each pod's environment (testenv exec = kubectl exec);
#      helm upgrade changing cluster.replicas scales it; a bare helm
#      uninstall removes what it installed (the FlavioCluster through the
#      chart's pre-delete hook, its pods and children with it).
#   2. kubectl apply -f deploy/crd, deploy/manifests and deploy/examples does
#      the same, and kubectl delete -f removes it.
#
# The test environment has no cluster DNS, so clusters use addressMode podIP
# (a --set for helm, one inserted line for the example). Attaches to a
# running environment or starts one (and stops it at the end). When none can
# be had it skips, unless FLAVIO_TESTENV=required (CI), then it fails.
# Needs HELM (source deploy/tools.sh) and kubectl.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${HELM:?HELM must name the helm binary (source deploy/tools.sh)}"

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; dump; exit 1; }
testenv() { bash deploy/testenv/testenv "$@"; }

# What was running where, for a failure's report.
dump() {
  kubectl get fc,sts,pods,deploy -A -o wide 2>/dev/null || true
  local f
  for f in "${STATE:-/tmp/flavio-testenv}"/kubelet/logs/*operator*.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
  done
}

step "build the binaries the image map points at"
cargo build -q -p flavio-node --bin flavio -p flavio-operator --bin flavio-operator \
  -p flavio-testenv --bin testenv-exec

started=""
if ! testenv env >/dev/null 2>&1; then
  if ! testenv up; then
    [ "${FLAVIO_TESTENV:-}" = required ] && fail "the test environment could not be started"
    echo "SKIPPING: no test environment (set FLAVIO_TESTENV=required to fail instead)"
    exit 0
  fi
  started=1
fi
eval "$(testenv env)"
STATE="$FLAVIO_TESTENV_DIR"
cleanup() { if [ -n "$started" ]; then testenv down; fi; }
trap cleanup EXIT
# An environment started before the operator image was mapped: the stand-in
# reads the map at every container start, so adding the line is enough.
map="$STATE/kubelet/images.map"
target="${CARGO_TARGET_DIR:-$PWD/target}"
grep -q '^flaviodb/flavio-operator ' "$map" ||
  echo "flaviodb/flavio-operator = $target/debug/flavio-operator run" >>"$map"

# wait_until SECONDS WHAT CMD...: polls CMD until it succeeds.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${secs}s waiting for $what"
    sleep 1
  done
}

# fc_is NS NAME MEMBERS: Available with MEMBERS members, none in transit.
fc_is() {
  local got
  got="$(kubectl get fc -n "$1" "$2" \
    -o 'jsonpath={.status.phase}/{.status.memberCount}/{.status.readyReplicas}/{.status.pendingTransfers}')"
  [ "$got" = "Available/$3/$3/0" ] || [ "$got" = "Available/$3/$3/" ]
}

# check_cli NS NAME MEMBERS: the CLI with no flags in every pod of the cluster.
check_cli() {
  local ns=$1 name=$2 n=$3 i out
  for ((i = 0; i < n; i++)); do
    testenv exec -n "$ns" "$name-$i" -- flavio ping | grep -q '^pong ' ||
      fail "flavio ping in $name-$i"
  done
  out="$(testenv exec -n "$ns" "$name-0" -- flavio add 2 5)"
  [ "$(head -n 1 <<<"$out")" = 7 ] || fail "flavio add 2 5 printed: $out"
  out="$(testenv exec -n "$ns" "$name-$((n - 1))" -- flavio stats)"
  grep -q '^Total: [1-9][0-9]* ops in 64 vnodes' <<<"$out" || fail "flavio stats printed: $out"
  out="$(testenv exec -n "$ns" "$name-0" -- flavio admin member-status)"
  for ((i = 0; i < n; i++)); do
    grep -q "valid.*'flavio@$name-$i\." <<<"$out" || fail "member-status lacks $name-$i: $out"
  done
  echo "$ns/$name: ping in $n pods, add 2 5 = 7, stats, member-status ($n valid) with no flags"
}

ns=flavio-helm
step "helm install (operator + example cluster) into $ns"
"$HELM" install flavio charts/flavio --namespace "$ns" --create-namespace \
  --set cluster.enabled=true --set cluster.name=demo --set cluster.replicas=3 \
  --set cluster.addressMode=podIP --set operator.logFormat=human
wait_until 60 "the operator Deployment" kubectl -n "$ns" rollout status deploy/flavio-operator --timeout=5s
wait_until 180 "FlavioCluster demo Available with 3 members" fc_is "$ns" demo 3
check_cli "$ns" demo 3

step "helm upgrade: cluster.replicas 3 -> 4"
"$HELM" upgrade flavio charts/flavio --namespace "$ns" --reuse-values --set cluster.replicas=4
wait_until 240 "FlavioCluster demo Available with 4 members" fc_is "$ns" demo 4
check_cli "$ns" demo 4

step "helm uninstall"
# A bare uninstall: the chart's pre-delete hook Job (the operator image,
# `flavio-operator delete-cluster`) deletes the FlavioCluster and waits while
# the operator runs its finalizer, then helm removes the operator.
"$HELM" uninstall flavio --namespace "$ns" --wait --timeout 300s
# The hook did it (not a lucky race): its pod's log says so.
grep -qs "flaviocluster $ns/demo deleted" "$STATE/kubelet/logs/${ns}_flavio-operator-uninstall-"*_delete-cluster.log ||
  fail "no log of the pre-delete hook deleting $ns/demo"
no_children() {
  [ -z "$(kubectl get fc,sts,deploy,job,pods,svc,sa,role,rolebinding -n "$ns" \
    -l app.kubernetes.io/name -o name 2>/dev/null)" ] &&
    [ -z "$(kubectl get fc,job,pods -n "$ns" -o name 2>/dev/null)" ]
}
wait_until 120 "everything the release made to be gone" no_children
kubectl delete ns "$ns" --wait=false >/dev/null
echo "uninstalled: no FlavioCluster, StatefulSet, Deployment, pod or RBAC left in $ns"

step "kubectl apply -f deploy/crd, deploy/manifests, deploy/examples"
kubectl apply -f deploy/crd/flaviocluster.yaml -f deploy/manifests/flavio-operator.yaml
wait_until 60 "the operator Deployment" \
  kubectl -n flavio-system rollout status deploy/flavio-operator --timeout=5s
ns=flavio-example
kubectl create namespace "$ns"
sed 's/^spec:$/spec:\n  addressMode: podIP/' deploy/examples/flaviocluster.yaml |
  kubectl apply -n "$ns" -f -
wait_until 240 "FlavioCluster demo Available with 4 members" fc_is "$ns" demo 4
check_cli "$ns" demo 4
kubectl scale fc demo -n "$ns" --replicas=3
wait_until 240 "FlavioCluster demo Available with 3 members" fc_is "$ns" demo 3
check_cli "$ns" demo 3

step "kubectl delete -f"
kubectl delete -n "$ns" -f deploy/examples/flaviocluster.yaml --wait --timeout=120s
kubectl delete -f deploy/manifests/flavio-operator.yaml --wait --timeout=120s
kubectl delete ns "$ns" --wait=false >/dev/null
echo
echo "testenv install: helm install/upgrade/uninstall and kubectl apply/scale/delete passed"
