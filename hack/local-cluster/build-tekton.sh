#!/usr/bin/env bash
# Build Tekton Pipelines $TEKTON_VERSION's controller and the helper binaries its pods use (entrypoint, nop,
# workingdirinit, sidecarlogresults) into $PIP_CLUSTER_DIR/tekton/bin, from a tool module generated in
# $PIP_CLUSTER_DIR/src/tekton (`go get -tool ...`). Skips the build when binaries and inputs are unchanged.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
go_env

CMDS="controller $TEKTON_HELPER_IMAGES"
LDFLAGS="-s -w"
STAMP="tekton=$TEKTON_VERSION ldflags=$LDFLAGS $(go version)"
have_all() { local c; for c in $CMDS; do [ -x "$TEKTON_BIN/$c" ] || return 1; done; }
if have_all && stamp_ok "$TEKTON_BIN/.stamp" "$STAMP"; then
  log "Tekton binaries up to date ($TEKTON_VERSION)"; exit 0
fi

W=$SRC/tekton
mkdir -p "$TEKTON_BIN"
pkgs=(); for c in $CMDS; do pkgs+=("github.com/tektoncd/pipeline/cmd/$c"); done
tool_module "$W" tekton "$TEKTON_VERSION" "${pkgs[@]}"

t=$(now)
log "building Tekton $TEKTON_VERSION: $CMDS (cold: ~2 min once the k8s build cache is warm)"
(cd "$W" && gobuild -ldflags "$LDFLAGS" -o "$TEKTON_BIN/" "${pkgs[@]}")
echo "$STAMP" > "$TEKTON_BIN/.stamp"
log "built Tekton binaries in $(since "$t")s"
