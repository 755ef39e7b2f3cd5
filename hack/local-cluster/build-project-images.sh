#!/usr/bin/env bash
# Build this project's commands (./cmd/entrypoint, ./cmd/controller: whichever exist) as static binaries and load
# each into the cluster's containerd as a ko-style image: the binary at /ko-app/<name>, entrypoint /ko-app/<name>,
# tagged pipelineinpod.local/pipelineinpod/<name>:$PIP_IMAGE_TAG (default dev). Re-running replaces the tag.
#
#   hack/local-cluster/build-project-images.sh [NAME...]     (default: every dir under cmd/ with a main package)
#
# Uses the developers' usual Go caches (it builds the project, not the cluster). Binaries: $PIP_CLUSTER_DIR/project/bin.
# If the cluster is down, the images are only built (OCI archives in $PIP_CLUSTER_DIR/images) and loaded by the next up.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
TAG=$PROJECT_IMAGE_TAG
OUT=$D/project/bin
mkdir -p "$OUT" "$IMG/oci"

cd "$REPO_ROOT"
if [ $# -gt 0 ]; then names=("$@"); else
  names=(); for d in cmd/*/; do [ -d "$d" ] && ls "$d"*.go >/dev/null 2>&1 && names+=("$(basename "$d")"); done
fi
[ ${#names[@]} -gt 0 ] || die "no commands under $REPO_ROOT/cmd"

t=$(now)
pkgs=(); for n in "${names[@]}"; do [ -d "cmd/$n" ] || die "no cmd/$n in $REPO_ROOT"; pkgs+=("./cmd/$n"); done
CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n "${PIP_NICE:-10}" go build -trimpath -ldflags "-s -w" -o "$OUT/" "${pkgs[@]}"
log "built ${names[*]} in $(since "$t")s"

cluster_up=0; [ -S "$CONTAINERD_SOCK" ] && ctr -a "$CONTAINERD_SOCK" version >/dev/null 2>&1 && cluster_up=1
for n in "${names[@]}"; do
  layout=project-$n
  sum=$(sha256sum < "$OUT/$n" | cut -c1-16)
  if ! stamp_ok "$IMG/oci/$layout.stamp" "$sum" || [ ! -f "$IMG/$layout.oci.tar" ]; then
    rm -rf "$IMG/oci/$layout"
    eval "pop_project_$n() { rootfs_koapp $n \"$OUT/$n\" \"\$1\"; }"
    # shellcheck disable=SC2046
    oci_add "$IMG/oci/$layout" "$n" "pop_project_$n" $(ko_config_args "$n")
    oci_finish "$IMG/oci/$layout"
    echo "$sum" > "$IMG/oci/$layout.stamp"
  fi
  if [ $cluster_up = 1 ]; then
    import_layout "$layout" "$n $PROJECT_IMAGE_PREFIX/$n:$TAG"
    echo "$PROJECT_IMAGE_PREFIX/$n:$TAG"
  else
    log "cluster not running: $layout built, not loaded (import-images.sh loads it after up.sh)"
  fi
done
