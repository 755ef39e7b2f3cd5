#!/usr/bin/env bash
# Build the tkn CLI ($TKN_VERSION, which has `tkn customrun describe`) into $PIP_CLUSTER_DIR/bin/tkn,
# from its own tool module in $PIP_CLUSTER_DIR/src/tkn. Skips the build when unchanged (cold: ~1.5 min after the Tekton build).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
go_env

PKG=github.com/tektoncd/cli/cmd/tkn
LDFLAGS="-s -w -X github.com/tektoncd/cli/pkg/cmd/version.clientVersion=${TKN_VERSION#v}"
STAMP="tkn=$TKN_VERSION ldflags=$LDFLAGS $(go version)"
if [ -x "$BIN/tkn" ] && stamp_ok "$BIN/.tkn.stamp" "$STAMP"; then log "tkn up to date ($TKN_VERSION)"; exit 0; fi

W=$SRC/tkn
mkdir -p "$BIN"
tool_module "$W" tkn "$TKN_VERSION" "$PKG"

t=$(now)
log "building tkn $TKN_VERSION"
(cd "$W" && gobuild -ldflags "$LDFLAGS" -o "$BIN/tkn" "$PKG")
echo "$STAMP" > "$BIN/.tkn.stamp"
log "built tkn in $(since "$t")s"
