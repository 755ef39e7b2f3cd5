#!/usr/bin/env bash
# Load the images built by build-images.sh into the cluster's containerd (namespace k8s.io) under the names pods use.
# Cheap when nothing changed: a name is (re)imported only when missing or pointing at another digest.
# Needs containerd running (up.sh starts it before calling this).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
[ -S "$CONTAINERD_SOCK" ] || die "containerd is not running ($CONTAINERD_SOCK)"

# name:latest and name:local for each stand-in (pods must use imagePullPolicy IfNotPresent with :latest: pitfall 3).
both() { local tag=$1 repo; shift; for repo in "$@"; do echo "$tag $repo:latest"; echo "$tag $repo:local"; done; }

import_layout pause "pause $PAUSE_IMAGE" "pause pipelineinpod.local/pause:3.10.1"

mapfile -t bb < <(both busybox mirror.gcr.io/busybox docker.io/library/busybox; echo "busybox $TEKTON_IMAGE_PREFIX/shell:$TEKTON_VERSION")
mapfile -t al < <(both alpine mirror.gcr.io/alpine docker.io/library/alpine)
import_layout busybox "${bb[@]}" "${al[@]}"

mapfile -t ub < <(both ubuntu mirror.gcr.io/ubuntu docker.io/library/ubuntu)
mapfile -t ba < <(both bash mirror.gcr.io/bash docker.io/library/bash)
import_layout debian "${ub[@]}" "${ba[@]}"

if [ -f "$IMG/oci/tekton/index.json" ]; then
  tk=(); for n in $TEKTON_HELPER_IMAGES; do tk+=("$n $TEKTON_IMAGE_PREFIX/$n:$TEKTON_VERSION"); done
  import_layout tekton "${tk[@]}"
fi
# This project's images, when build-project-images.sh has built them.
for idx in "$IMG"/oci/project-*/index.json; do
  [ -f "$idx" ] || continue
  n=$(basename "$(dirname "$idx")"); n=${n#project-}
  import_layout "project-$n" "$n $PROJECT_IMAGE_PREFIX/$n:$PROJECT_IMAGE_TAG"
done
log "images in containerd (k8s.io): $(ctr_k8s images ls -q | grep -vc '^pipelineinpod.local/import/') names"
