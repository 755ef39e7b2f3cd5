#!/usr/bin/env bash
# Install a linter `make lint` runs, if missing, and print its path.
#
#   hack/tools.sh golangci-lint|goimports|shellcheck
#
# The Go tools are built from the Go module proxy with /usr/local/go into
# $PIP_CLUSTER_DIR/tools/NAME@VERSION/ (next to the local cluster's build cache, which CI keeps between runs),
# one directory per version, rebuilt only when the version or the Go toolchain changed: a cold install of
# golangci-lint takes a few minutes, a warm call a few milliseconds. shellcheck is Debian's package.
set -euo pipefail
# shellcheck source=local-cluster/lib.sh
source "$(dirname "$0")/local-cluster/lib.sh"
log() { echo "[tools $(date +%H:%M:%S)] $*" >&2; }

GOLANGCI_LINT_VERSION=${GOLANGCI_LINT_VERSION:-v2.15.0}
GOIMPORTS_VERSION=${GOIMPORTS_VERSION:-v0.52.0}
TOOLS=$D/tools

# go_tool NAME VERSION PKG: `go install PKG@VERSION` into $TOOLS/NAME@VERSION, print the binary's path.
go_tool() {
  local name=$1 version=$2 pkg=$3 t
  local dir=$TOOLS/$name@$version
  go_env
  local stamp; stamp="$pkg@$version $(go version)"
  if [ -x "$dir/$name" ] && stamp_ok "$dir/.stamp" "$stamp"; then echo "$dir/$name"; return 0; fi
  t=$(now)
  log "installing $name $version"
  rm -rf "$dir"; mkdir -p "$dir"
  if ! GOBIN=$dir nice -n "${PIP_NICE:-10}" go install "$pkg@$version" > "$dir/install.log" 2>&1; then
    tail -30 "$dir/install.log" >&2; die "go install $pkg@$version failed (log: $dir/install.log)"
  fi
  echo "$stamp" > "$dir/.stamp"
  log "installed $name $version in $(since "$t")s"
  echo "$dir/$name"
}

case ${1:-} in
  golangci-lint) go_tool golangci-lint "$GOLANGCI_LINT_VERSION" github.com/golangci/golangci-lint/v2/cmd/golangci-lint ;;
  goimports) go_tool goimports "$GOIMPORTS_VERSION" golang.org/x/tools/cmd/goimports ;;
  shellcheck)
    if ! command -v shellcheck >/dev/null; then
      t=$(now)
      log "installing Debian's shellcheck"
      mkdir -p "$D"
      if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck; } \
          > "$D/apt-shellcheck.log" 2>&1; then
        tail -30 "$D/apt-shellcheck.log" >&2; die "apt-get failed (log: $D/apt-shellcheck.log)"
      fi
      log "shellcheck installed in $(since "$t")s"
    fi
    command -v shellcheck ;;
  *) die "usage: $0 golangci-lint|goimports|shellcheck" ;;
esac
