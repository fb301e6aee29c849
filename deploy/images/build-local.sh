#!/usr/bin/env bash
# Builds a node or operator image from a binary built on this host, on a base
# made here: no image is pulled (our machines reach no registry of images).
#
#   deploy/images/build-local.sh node     target/release/flavio           flaviodb/flavio:0.1.0
#   deploy/images/build-local.sh operator target/release/flavio-operator  flaviodb/flavio-operator:0.1.0
#
# The root filesystem is the stripped binary, exactly the shared libraries
# `ldd` names (with the dynamic loader), /etc/passwd and /etc/group with the
# non-root user 65532 (as distroless's `nonroot`), and /var/lib/flavio owned
# by it; then `FROM scratch` + COPY. Same layout, user, env and entrypoint as
# the multi-stage Dockerfiles beside this script.
# PODMAN may override the podman command (CI passes the runtime flags).
set -euo pipefail

kind="${1:?usage: build-local.sh node|operator BINARY TAG}"
binary="${2:?usage: build-local.sh node|operator BINARY TAG}"
tag="${3:?usage: build-local.sh node|operator BINARY TAG}"
read -r -a podman <<<"${PODMAN:-podman --runtime runc --cgroup-manager=cgroupfs}"

case "$kind" in
  node) name=flavio ;;
  operator) name=flavio-operator ;;
  *) echo "unknown image kind: $kind" >&2; exit 2 ;;
esac

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"  # packed into rootfs.tar, the only build input
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/var/lib/flavio"
# Debug line tables help on the host, not in an image that must stay small.
strip -o "$root/usr/local/bin/$name" "$binary"

# Every library the binary loads, and the loader itself, at their own paths.
while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done < <(ldd "$binary" | grep -o '/[^ ]*' | sort -u)

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/var/lib/flavio:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
# glibc reads these for name lookups (the nodes find each other by DNS name).
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"
# The data directory belongs to the runtime user, so the node can write it
# with a read-only root filesystem. A tarball keeps that ownership through
# ADD (a COPY of a directory would not carry the directory's own owner).
chown 65532:65532 "$root/var/lib/flavio"
tar -C "$root" --numeric-owner -cf "$ctx/rootfs.tar" .

{
  echo "FROM scratch"
  echo "ADD rootfs.tar /"
  # Scratch has no PATH; pods' commands and `kubectl exec ... flavio` need one.
  echo "ENV PATH=/usr/local/bin:/usr/bin:/bin"
  if [[ "$kind" == node ]]; then
    echo "ENV HOME=/var/lib/flavio FLAVIO_DATA_DIR=/var/lib/flavio FLAVIO_LISTEN=0.0.0.0:10017 FLAVIO_LOG_FORMAT=json"
    echo 'VOLUME ["/var/lib/flavio"]'
    echo "EXPOSE 10017"
    echo "USER 65532:65532"
    echo 'ENTRYPOINT ["/usr/local/bin/flavio", "serve"]'
  else
    echo "EXPOSE 8080"
    echo "USER 65532:65532"
    echo 'ENTRYPOINT ["/usr/local/bin/flavio-operator", "run"]'
  fi
} >"$ctx/Containerfile"

"${podman[@]}" build --network host --quiet -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null
echo "built $tag"
