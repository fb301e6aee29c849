#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager) from
# Debian's `kubernetes` source package and caches the binaries outside the work
# tree, keyed by the source version. Idempotent: a cached build is reused.
#
#   bash deploy/testenv/build.sh        # prints the bin dir on its last line
#
# Env: FLAVIO_TESTENV_CACHE (default /var/cache/flavio-testenv)
set -euo pipefail

CACHE="${FLAVIO_TESTENV_CACHE:-/var/cache/flavio-testenv}"
K8S_VERSION_LDFLAG="v1.20.2"
STEP="start"
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "build.sh: FAILED at step: ${STEP} (exit $rc)" >&2; fi' EXIT

step() { STEP="$1"; echo "==> build.sh: $1" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "install Debian packages"
PKGS=(golang-go etcd-server rsync golang-github-modern-go-reflect2-dev dpkg-dev make gcc curl openssl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

step "configure a private deb-src source list"
mkdir -p "$CACHE/apt/sources.list.d" "$CACHE/apt/lists/partial" "$CACHE/src"
# Mirror every Debian `deb` entry of the machine as `deb-src`, in our own dir.
src_file="$CACHE/apt/sources.list.d/flavio-debian-src.sources"
: > "$src_file.tmp"
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  grep -qi 'debian' "$f" || continue
  sed -e 's/^Types:.*/Types: deb-src/' "$f" >> "$src_file.tmp"
  printf '\n' >> "$src_file.tmp"
done
if [ -f /etc/apt/sources.list ]; then
  grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > "$CACHE/apt/sources.list" || true
else
  : > "$CACHE/apt/sources.list"
fi
mv "$src_file.tmp" "$src_file"
APT_OPTS=(-o "Dir::Etc::SourceParts=$CACHE/apt/sources.list.d"
          -o "Dir::Etc::SourceList=$CACHE/apt/sources.list"
          -o "Dir::State::Lists=$CACHE/apt/lists")

step "look up the kubernetes source version"
SRC_VERSION="$( (apt-cache "${APT_OPTS[@]}" showsrc kubernetes 2>/dev/null || true) | awk '/^Version:/{print $2; exit}')"
if [ -z "$SRC_VERSION" ]; then
  as_root apt-get "${APT_OPTS[@]}" update -q
  SRC_VERSION="$(apt-cache "${APT_OPTS[@]}" showsrc kubernetes | awk '/^Version:/{print $2; exit}')"
fi
[ -n "$SRC_VERSION" ] || { echo "no kubernetes source package found" >&2; exit 1; }
KEY="k8s-${SRC_VERSION}"
OUT="$CACHE/$KEY"
BIN="$OUT/bin"
echo "source version: $SRC_VERSION -> $BIN" >&2

if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -f "$BIN/.complete" ]; then
  step "reuse cached binaries"
  echo "$BIN"
  exit 0
fi

step "download the kubernetes source package"
DL="$OUT/download"
mkdir -p "$DL"
if ! ls "$DL"/kubernetes_*.dsc >/dev/null 2>&1; then
  (cd "$DL" && apt-get "${APT_OPTS[@]}" source --download-only kubernetes="$SRC_VERSION")
fi
DSC="$(ls "$DL"/kubernetes_*.dsc | head -n1)"

step "unpack the source"
TREE="$OUT/gopath/src/k8s.io/kubernetes"
if [ ! -f "$TREE/.unpacked" ]; then
  rm -rf "$OUT/gopath" "$OUT/unpack"
  mkdir -p "$OUT/gopath/src/k8s.io"
  dpkg-source --no-check -x "$DSC" "$OUT/unpack" >&2
  mv "$OUT/unpack" "$TREE"
  touch "$TREE/.unpacked"
fi

step "patch vendored reflect2 with Debian's 1.0.2 (Go 1.19 SIGSEGV fix)"
R2SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -d "$R2SRC" ] || { echo "missing $R2SRC" >&2; exit 1; }
rsync -a --delete "$R2SRC/" "$TREE/vendor/github.com/modern-go/reflect2/"

export GOPATH="$OUT/gopath" GO111MODULE=off GOFLAGS="" GOCACHE="$OUT/gocache" GOTOOLCHAIN=local
export PATH="$GOPATH/bin:$PATH"
cd "$TREE"

step "make generated_files"
if [ ! -f "$TREE/.generated" ]; then
  make generated_files >&2
  touch "$TREE/.generated"
fi

LDFLAGS="-s -w"
for v in k8s.io/client-go/pkg/version k8s.io/component-base/version k8s.io/kubernetes/pkg/version; do
  LDFLAGS+=" -X $v.gitVersion=${K8S_VERSION_LDFLAG} -X $v.gitMajor=1 -X $v.gitMinor=20"
  LDFLAGS+=" -X $v.gitTreeState=clean -X $v.gitCommit=debian-${SRC_VERSION}"
done
# In GOPATH mode vendored packages are addressed under the vendor dir.
for v in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
  LDFLAGS+=" -X $v.gitVersion=${K8S_VERSION_LDFLAG} -X $v.gitMajor=1 -X $v.gitMinor=20"
  LDFLAGS+=" -X $v.gitTreeState=clean -X $v.gitCommit=debian-${SRC_VERSION}"
done

mkdir -p "$BIN"
for cmd in kube-apiserver kube-controller-manager; do
  step "go build $cmd"
  if [ ! -x "$BIN/$cmd" ]; then
    go build -o "$BIN/$cmd.tmp" -ldflags "$LDFLAGS" "k8s.io/kubernetes/cmd/$cmd" >&2
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  fi
done

step "verify"
"$BIN/kube-apiserver" --version >&2
touch "$BIN/.complete"
step "done"
echo "$BIN"
