#!/usr/bin/env bash
# Build ko ($KO_VERSION, github.com/google/ko) into $PIP_CLUSTER_DIR/bin/ko from its own tool module in
# $PIP_CLUSTER_DIR/src/ko, through the Go module proxy. Skips the build when unchanged (cold: ~1-2 min).
# ko builds config/'s ko:// images and pushes them to the local registry (with-cluster.sh, `make release`).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
go_env

PKG=github.com/google/ko
LDFLAGS="-s -w -X github.com/google/ko/pkg/commands.Version=$KO_VERSION"
STAMP="ko=$KO_VERSION ldflags=$LDFLAGS $(go version)"
if [ -x "$BIN/ko" ] && stamp_ok "$BIN/.ko.stamp" "$STAMP"; then log "ko up to date ($KO_VERSION)"; exit 0; fi

W=$SRC/ko
mkdir -p "$BIN"
tool_module "$W" ko "$KO_VERSION" "$PKG"

t=$(now)
log "building ko $KO_VERSION"
(cd "$W" && gobuild -ldflags "$LDFLAGS" -o "$BIN/ko" "$PKG")
echo "$STAMP" > "$BIN/.ko.stamp"
log "built ko in $(since "$t")s"
