#!/usr/bin/env bash
# Packaging checks, run by .ci/run after the workspace tests (and by hand):
# tools, shellcheck, helm lint, the values schema, CRD and rendered-manifest
# drift, the offline manifest validation, and the node image built from the
# host's release binary, run under podman, probed and used as a user would;
# then the whole install (deploy/e2e/testenv-install.sh) on the test environment.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "packaging tools (podman, runc, shellcheck, helm)"
# shellcheck source=deploy/tools.sh
source deploy/tools.sh
"$HELM" version --short
podman --version
# runc and cgroupfs: what works in our sandbox (no systemd, no crun).
pm=(podman --runtime runc --cgroup-manager=cgroupfs)
export PODMAN="${pm[*]}"  # for build-local.sh

step "shellcheck and bash -n"
scripts=(deploy/*.sh deploy/images/*.sh deploy/e2e/*.sh)
for s in "${scripts[@]}"; do bash -n "$s"; done
shellcheck -x "${scripts[@]}"
echo "${#scripts[@]} scripts clean"

step "helm lint --strict"
"$HELM" lint --strict charts/flavio
"$HELM" lint --strict charts/flavio --values charts/flavio/ci/all-options-values.yaml

step "values.schema.json rejects bad values"
for bad in cluster.replicas=0 cluster.ringSize=50 cluster.ringSize=2048 cluster.replica=3 \
  cluster.storage.whenScaled=Keep cluster.storage.size=lots operator.logFormat=xml \
  cluster.addressMode=ip rbac.clusterwide=true metrics.port=0 cluster.handoffConcurrency=100 \
  cluster.image.pullPolicy=Sometimes cluster.nodeSelector.disk=1 \
  cluster.enabled=true,cluster.writeQuorum=5 cluster.enabled=true,cluster.nVal=100,cluster.ringSize=64 \
  cluster.enabled=true,cluster.replicas=2; do
  if "$HELM" template flavio charts/flavio --set "$bad" >/dev/null 2>&1; then
    fail "the chart accepted --set $bad"
  fi
  echo "rejected --set $bad"
done

# A ring size that is a multiple of 3 (for three zones) is accepted.
"$HELM" template flavio charts/flavio --set cluster.enabled=true,cluster.ringSize=48 >/dev/null ||
  fail "cluster.ringSize=48 must be accepted"

# replicas below nVal is refused unless accepted explicitly.
"$HELM" template flavio charts/flavio \
  --set cluster.enabled=true,cluster.replicas=2,cluster.allowReplicasBelowNVal=true >/dev/null ||
  fail "cluster.allowReplicasBelowNVal=true must accept replicas below nVal"

step "CRD drift: the chart's and deploy/'s CRD are what 'flavio-operator crd' prints"
tmp="$(mktemp -d)"
container=""
cleanup() {
  if [[ -n "$container" ]]; then "${pm[@]}" rm -f -v "$container" >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
cargo run --quiet --locked -p flavio-operator -- crd >"$tmp/crd.yaml"
cmp "$tmp/crd.yaml" charts/flavio/crds/flaviocluster.yaml || fail "charts/flavio/crds/ is stale: copy 'flavio-operator crd' output there"
cmp "$tmp/crd.yaml" deploy/crd/flaviocluster.yaml || fail "deploy/crd/ is stale: regenerate with 'flavio-operator crd'"
echo "CRD identical in charts/flavio/crds and deploy/crd"

step "rendered manifests drift (deploy/render.sh)"
deploy/render.sh "$tmp/render"
for f in rendered/default.yaml rendered/all-options.yaml rendered/long-name.yaml manifests/flavio-operator.yaml; do
  diff -u "deploy/$f" "$tmp/render/$f" || fail "deploy/$f is stale: run deploy/render.sh and commit"
done
echo "deploy/rendered and deploy/manifests match the chart"

step "offline manifest validation (k8s-openapi types, CRD schema)"
cargo test --locked -p flavio-manifests

step "node image from the host's release binary"
cargo build --release --locked -p flavio-node --bin flavio
image=localhost/flavio:ci
deploy/images/build-local.sh node target/release/flavio "$image"
size="$("${pm[@]}" image inspect --format '{{.Size}}' "$image")"
echo "node image size: $size bytes ($((size / 1024 / 1024)) MiB)"
((size < 40 * 1000 * 1000)) || fail "node image is $size bytes, over 40 MB"

step "operator image from the host's binary (crd printed inside it)"
# The debug binary the tests built: this proves the image layout and its
# libraries, not the optimiser, and spares CI a second release build.
deploy/images/build-local.sh operator target/debug/flavio-operator localhost/flavio-operator:ci
"${pm[@]}" run --rm --network host --read-only \
  --entrypoint /usr/local/bin/flavio-operator localhost/flavio-operator:ci crd >"$tmp/crd-image.yaml"
cmp "$tmp/crd.yaml" "$tmp/crd-image.yaml" || fail "the operator image prints a different CRD"
echo "operator image runs (non-root, read-only root fs)"
# Every operator pod the chart and the manifests define (Deployment, uninstall
# hook Job), run in the image as a kubelet would run it (its command replacing
# the image's entrypoint, or the entrypoint followed by its args), with
# --help added: it must parse. The test environment maps images to host
# binaries, so only a real image proves that pod specs and entrypoint agree.
python3 - "${pm[@]}" -- deploy/rendered/default.yaml deploy/rendered/all-options.yaml \
  deploy/manifests/flavio-operator.yaml <<'PY' || fail "an operator pod's command does not run in the image"
import subprocess, sys, yaml
sep = sys.argv.index("--")
podman, files = sys.argv[1:sep], sys.argv[sep + 1:]
checked = failed = 0
for f in files:
    for doc in yaml.safe_load_all(open(f)):
        pod = ((doc or {}).get("spec") or {}).get("template", {}).get("spec") or {}
        for c in pod.get("containers", []):
            if "flavio-operator" not in c.get("image", ""):
                continue
            cmd, args = c.get("command") or [], c.get("args") or []
            argv = podman + ["run", "--rm", "--network", "host", "--read-only"]
            if cmd:
                argv += ["--entrypoint", cmd[0]]
                args = cmd[1:] + args
            argv += ["localhost/flavio-operator:ci"] + args + ["--help"]
            r = subprocess.run(argv, capture_output=True, text=True)
            checked += 1
            what = f"{f}: {doc['kind']} {doc['metadata']['name']}"
            if r.returncode != 0:
                failed += 1
                print(f"FAIL {what}: {' '.join(cmd + args)}: {r.stderr.strip()}")
            else:
                print(f"ok   {what}: {' '.join(cmd or ['<entrypoint>'])} {' '.join(c.get('args') or [])}")
sys.exit(1 if failed or not checked else 0)
PY

step "run the node image, health, ping from the host, kubectl-exec-style commands"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$tmp/cookie"
head -c 24 /dev/urandom | base64 >"$tmp/cookie/cookie"
chmod 0644 "$tmp/cookie/cookie"
container="flavio-ci-$$"
# The environment the operator's StatefulSet gives a pod (children.rs), with
# the cookie Secret mounted read-only and the root filesystem read-only.
"${pm[@]}" run -d --name "$container" --network host --read-only \
  -e FLAVIO_NAME=flavio@127.0.0.1 \
  -e FLAVIO_LISTEN="127.0.0.1:$port" \
  -e FLAVIO_NODE="127.0.0.1:$port" \
  -e FLAVIO_RING_SIZE=64 \
  -e FLAVIO_COOKIE_FILE=/etc/flavio/cookie/cookie \
  -v "$tmp/cookie:/etc/flavio/cookie:ro" \
  "$image" >/dev/null
healthy=""
for _ in $(seq 1 60); do
  if target/release/flavio health --node "127.0.0.1:$port" >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.5
done
[[ -n "$healthy" ]] || { "${pm[@]}" logs "$container" >&2 || true; fail "node container never became healthy"; }
echo "healthy on 127.0.0.1:$port"
FLAVIO_COOKIE_FILE="$tmp/cookie/cookie" target/release/flavio ping --node "127.0.0.1:$port" | grep -q '^pong ' \
  || fail "flavio ping from the host failed"
echo "host: flavio ping -> pong"
if target/release/flavio ping --node "127.0.0.1:$port" --cookie-file /dev/null >/dev/null 2>&1; then
  fail "a ping without the cookie was answered"
fi
echo "host: a ping without the cookie is refused"

# As `kubectl exec <pod> -- flavio ...`: no flags, the container's env only.
in_pod() { "${pm[@]}" exec "$container" flavio "$@"; }
in_pod ping | grep -q '^pong ' || fail "exec: flavio ping"
[[ "$(in_pod add 2 5 | head -n 1)" == 7 ]] || fail "exec: flavio add 2 5 did not print 7"
in_pod stats | grep -q '^Total: 3 ops in 64 vnodes' || fail "exec: flavio stats did not count the add's 3 replicas"
in_pod admin member-status | grep -q "valid .*100.0%.*'flavio@127.0.0.1'" || fail "exec: flavio admin member-status"
in_pod health | grep -q SERVING || fail "exec: flavio health"
echo "exec: ping, add 2 5 (=7), stats (3 ops), admin member-status, health all work with no flags"

"${pm[@]}" stop -t 10 "$container" >/dev/null
"${pm[@]}" rm -v "$container" >/dev/null
container=""
echo "node container stopped and removed"

step "the whole install on the test environment (helm and kubectl apply -f)"
# Required here: a CI run without the test environment must fail, not skip.
FLAVIO_TESTENV="${FLAVIO_TESTENV:-required}" bash deploy/e2e/testenv-install.sh

echo
echo "packaging: 10 passed, 0 failed"
