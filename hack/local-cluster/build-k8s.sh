#!/usr/bin/env bash
# Build kube-apiserver, kubelet, kube-scheduler, kube-controller-manager and kubectl of k8s.io/kubernetes $K8S_VERSION
# from the Go module proxy into $PIP_CLUSTER_DIR/bin. Skips the build when the binaries and their inputs are unchanged.
#
# k8s.io/kubernetes cannot be `go get`-ed directly: its go.mod replaces the 30-odd staging modules (k8s.io/api,
# k8s.io/client-go, ...) with ./staging/... paths. A generated wrapper module requires k8s.io/kubernetes and replaces
# each staging module with its published v0.<minor>.<patch> version instead.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
go_env

CMDS="kube-apiserver kubelet kube-scheduler kube-controller-manager kubectl"
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
# Version ldflags (pitfall 7): without them /version says v0.0.0-master and Tekton/knative refuse the cluster.
LDFLAGS="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS="$LDFLAGS -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
done
STAMP="k8s=$K8S_VERSION ldflags=$LDFLAGS $(go version)"

have_all() { local c; for c in $CMDS; do [ -x "$BIN/$c" ] || return 1; done; }
if have_all && stamp_ok "$BIN/.k8s.stamp" "$STAMP"; then
  log "k8s binaries up to date ($K8S_VERSION)"; exit 0
fi

W=$SRC/k8s
mkdir -p "$W" "$BIN"
if ! stamp_ok "$W/.stamp" "$K8S_VERSION" || [ ! -f "$W/go.sum" ]; then
  t=$(now)
  log "generating wrapper module for k8s.io/kubernetes $K8S_VERSION"
  rm -f "$W/go.mod" "$W/go.sum"
  # The .mod file of k8s.io/kubernetes, fetched through the configured GOPROXY.
  KMOD=$(cd "$W" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod)
  [ -s "$KMOD" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
  SV=v0.${K8S_VERSION#v1.}    # v1.35.4 -> v0.35.4
  {
    echo "module pipelineinpod.local/cluster/k8s"
    echo
    grep -E '^(go|godebug) ' "$KMOD"          # same language version and GODEBUG defaults as upstream
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s+k8s.io/\S+ => \./staging/' "$KMOD" | awk -v sv="$SV" '{printf "\t%s => %s %s\n", $1, $1, sv}'
    echo ")"
    echo
    for c in $CMDS; do echo "tool k8s.io/kubernetes/cmd/$c"; done
  } > "$W/go.mod"
  (cd "$W" && go mod tidy 2> "$W/tidy.log") || { tail -30 "$W/tidy.log" >&2; die "go mod tidy failed"; }
  echo "$K8S_VERSION" > "$W/.stamp"
  log "wrapper module ready in $(since "$t")s"
fi

t=$(now)
log "building $CMDS (cold: ~6 min on 2 cores; warm: seconds)"
pkgs=(); for c in $CMDS; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
(cd "$W" && gobuild -ldflags "$LDFLAGS" -o "$BIN/" "${pkgs[@]}")
echo "$STAMP" > "$BIN/.k8s.stamp"
log "built k8s binaries in $(since "$t")s"
"$BIN/kubectl" version --client 2>/dev/null | sed -n 1p >&2
