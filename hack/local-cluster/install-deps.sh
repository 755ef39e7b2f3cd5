#!/usr/bin/env bash
# Install the Debian packages the local cluster needs (fast no-op when they are all present).
#   containerd, runc, containernetworking-plugins  container runtime + bridge/host-local CNI plugins
#   etcd-server                                    etcd 3.4 (works with kube-apiserver 1.35: docs/local-cluster.md pitfall 9)
#   iptables, conntrack, iproute2, util-linux      kubelet/CNI needs, netns (unshare), bridge setup
#   socat                                          bridges the API server into the controllers' network namespaces
#   openssl                                        the cluster PKI
#   umoci, debootstrap, busybox-static             offline OCI images (Debian minbase rootfs, busybox)
#   jq, curl, ca-certificates                      scripting (and the CA bundle of the static base image)
#   docker-registry, skopeo                        the local image registry (registry.sh) and pushing images to it
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PKGS="containerd runc containernetworking-plugins etcd-server iptables conntrack iproute2 util-linux socat openssl
  umoci debootstrap busybox-static jq curl ca-certificates docker-registry skopeo"

missing=()
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then log "Debian packages present"; exit 0; fi

t=$(now)
log "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$D"
# Packages must not start their services (docker-registry's would listen on every interface, on our port):
# registry.sh runs the registry. Where no policy-rc.d says so already, one denies it for this install only.
policy=/usr/sbin/policy-rc.d
if [ ! -e $policy ]; then
  printf '#!/bin/sh\n# temporary, hack/local-cluster/install-deps.sh\nexit 101\n' > $policy; chmod 755 $policy
  trap 'rm -f $policy' EXIT
fi
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } > "$D/apt.log" 2>&1; then
  tail -30 "$D/apt.log" >&2; die "apt-get failed (log: $D/apt.log)"
fi
log "Debian packages installed in $(since "$t")s"
