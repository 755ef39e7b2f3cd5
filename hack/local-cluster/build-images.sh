#!/usr/bin/env bash
# Build the cluster's images offline as OCI layouts (umoci) under $PIP_CLUSTER_DIR/images. Each layout is rebuilt only
# when its inputs change. import-images.sh then loads them into containerd under their final names.
#
#   layout   tags                     what
#   pause    pause                    25-line Go pause process (pod sandbox image)
#   busybox  busybox alpine           Debian's busybox-static, every applet linked (sh, ash, /usr/bin/env, ...)
#   debian   ubuntu bash              Debian bookworm minbase from debootstrap: bash, coreutils, grep, sed, diff ...
#   tekton   entrypoint nop workingdirinit sidecarlogresults   Tekton helper binaries at /ko-app/<name>
#   static   static                   distroless-like: users root/nonroot, CA certificates, no shell (ko's base image)
#
# Needs: build-tekton.sh done (for the tekton layout); network access to the Debian mirror once (debootstrap).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
mkdir -p "$IMG/oci" "$IMG/rootfs"

# --- pause ----------------------------------------------------------------------------------------------------------
build_pause_bin() {
  go_env
  mkdir -p "$SRC/pause"
  cat > "$SRC/pause/main.go" <<'GO'
// pause: the pod sandbox process. Sleeps until SIGINT/SIGTERM and reaps orphaned children (it is PID 1).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range c {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  [ -f "$SRC/pause/go.mod" ] || printf 'module pipelineinpod.local/cluster/pause\n\ngo 1.25\n' > "$SRC/pause/go.mod"
  (cd "$SRC/pause" && gobuild -ldflags "-s -w" -o "$BIN/pause" .)
}

# --- Debian minbase rootfs (cached as a tarball: debootstrap needs the network and ~1-2 min) ------------------------
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_TAR=$IMG/rootfs/debian-$DEBIAN_SUITE-minbase.tar
build_debian_rootfs() {
  [ -s "$DEBIAN_TAR" ] && return 0
  local t d; t=$(now); d=$(mktemp -d "$IMG/rootfs/debootstrap.XXXXXX")
  log "debootstrap --variant=minbase $DEBIAN_SUITE (once; cached in $DEBIAN_TAR)"
  if ! debootstrap --variant=minbase --arch=amd64 "$DEBIAN_SUITE" "$d" "$DEBIAN_MIRROR" > "$IMG/rootfs/debootstrap.log" 2>&1; then
    tail -20 "$IMG/rootfs/debootstrap.log" >&2; rm -rf "$d"; die "debootstrap failed (log: $IMG/rootfs/debootstrap.log)"
  fi
  # Trim what no step needs; keep dpkg's database so the image still looks like a Debian system.
  rm -rf "$d"/var/cache/apt/* "$d"/var/lib/apt/lists/* "$d"/usr/share/doc/* "$d"/usr/share/man/* \
         "$d"/usr/share/info/* "$d"/usr/share/locale/* "$d"/var/log/* "${d:?}"/dev/* "$d"/debootstrap
  printf 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n' >> "$d/etc/passwd"
  printf 'nonroot:x:65532:\n' >> "$d/etc/group"
  tar -C "$d" --numeric-owner -cf "$DEBIAN_TAR.tmp" . && mv "$DEBIAN_TAR.tmp" "$DEBIAN_TAR"
  rm -rf "$d"
  log "Debian rootfs ready in $(since "$t")s ($(du -h "$DEBIAN_TAR" | cut -f1))"
}

# --- layouts --------------------------------------------------------------------------------------------------------
# build_layout NAME STAMP BUILD_FN: (re)build $IMG/oci/NAME with BUILD_FN when STAMP differs from the last build.
build_layout() {
  local name=$1 stamp=$2 fn=$3 t
  if [ -f "$IMG/oci/$name/index.json" ] && [ -f "$IMG/$name.oci.tar" ] && stamp_ok "$IMG/oci/$name.stamp" "$stamp"; then
    return 0
  fi
  t=$(now); rm -rf "$IMG/oci/$name"
  "$fn" "$IMG/oci/$name"
  oci_finish "$IMG/oci/$name"
  echo "$stamp" > "$IMG/oci/$name.stamp"
  log "image layout $name built in $(since "$t")s"
}

pop_pause() { rootfs_etc "$1"; cp "$BIN/pause" "$1/pause"; }
layout_pause() { oci_add "$1" pause pop_pause --config.entrypoint /pause --config.user 65535:65535; }

layout_busybox() {
  oci_add "$1" busybox rootfs_busybox --config.cmd sh
  oci_retag "$1" busybox alpine --clear=config.cmd --config.cmd /bin/sh
}

# As distroless/static and cgr.dev/chainguard/static: no shell, CA certificates, user nonroot (65532).
pop_static() { rootfs_etc "$1"; mkdir -p "$1/etc/ssl/certs"; cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/"; }
layout_static() { oci_add "$1" static pop_static --config.user 65532; }

pop_debian() { tar -C "$1" --numeric-owner -xpf "$DEBIAN_TAR"; }
layout_debian() {
  oci_add "$1" ubuntu pop_debian --config.cmd /bin/bash
  oci_retag "$1" ubuntu bash --clear=config.cmd --config.cmd bash
}

layout_tekton() {
  local n
  for n in $TEKTON_HELPER_IMAGES; do
    eval "pop_tekton_$n() { rootfs_koapp $n \"$TEKTON_BIN/$n\" \"\$1\"; }"
    # shellcheck disable=SC2046
    oci_add "$1" "$n" "pop_tekton_$n" $(ko_config_args "$n")
  done
}

[ -x "$BIN/pause" ] || build_pause_bin
build_layout pause "pause=$(sha256sum < "$BIN/pause" | cut -c1-16)" layout_pause
build_layout busybox "busybox=$(dpkg-query -W -f='${Version}' busybox-static) v2" layout_busybox
build_layout static "static=$(sha256sum < /etc/ssl/certs/ca-certificates.crt | cut -c1-16) v1" layout_static
build_debian_rootfs
build_layout debian "debian=$(sha256sum < "$DEBIAN_TAR" | cut -c1-16)" layout_debian
if [ -x "$TEKTON_BIN/entrypoint" ]; then
  sums=$(for n in $TEKTON_HELPER_IMAGES; do sha256sum < "$TEKTON_BIN/$n" | cut -c1-12; done | tr '\n' ' ')
  build_layout tekton "tekton=$TEKTON_VERSION $sums" layout_tekton
else
  log "Tekton binaries not built yet: skipping the tekton image layout (run build-tekton.sh)"
fi
log "image layouts ready in $IMG/oci"
