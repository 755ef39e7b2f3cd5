#!/usr/bin/env bash
# Run a command against a cluster where PipelineInPod runs.
#
#   hack/with-cluster.sh CMD [ARGS...]
#
# With KUBECONFIG naming another cluster, PipelineInPod must already be installed there
# (`ko apply -f config/`); the command just runs. Otherwise (KUBECONFIG unset, or the
# local cluster's), the local cluster is brought up if needed (hack/local-cluster/up.sh,
# idempotent), this checkout's entrypoint image is built and loaded, config/'s
# namespace, RBAC and ConfigMaps are applied, and this checkout's controller is
# (re)started on the host in a loopback-only network namespace (docs/local-cluster.md: Knative
# controllers bind *:8080/*:9090). The controller's log is
# $PIP_CLUSTER_DIR/run/logs/pipelineinpod-controller.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
local_kubeconfig=${PIP_CLUSTER_DIR:-/var/tmp/pipelineinpod-cluster}/kubeconfig

if [ -n "${KUBECONFIG:-}" ] && [ "$KUBECONFIG" != "$local_kubeconfig" ]; then
  exec "$@"
fi

log() { echo "[with-cluster] $*" >&2; }
if ! { [ -f "$local_kubeconfig" ] && KUBECONFIG=$local_kubeconfig "${PIP_CLUSTER_DIR:-/var/tmp/pipelineinpod-cluster}/bin/kubectl" get --raw /readyz >/dev/null 2>&1; }; then
  log "bringing up the local cluster"
  hack/local-cluster/up.sh >/dev/null
fi
# shellcheck source=local-cluster/env.sh
source hack/local-cluster/env.sh

# Rebuild and restart only when this checkout changed since the running controller was
# started, so that `make e2e conformance` starts it once.
stamp=$PIP_CLUSTER_DIR/run/pipelineinpod-controller.stamp
want=$(git rev-parse HEAD 2>/dev/null)-$( (git diff HEAD 2>/dev/null; git ls-files --others --exclude-standard -z cmd pkg | xargs -0r cat) | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! pgrep -f "bin/pipelineinpod-controller" >/dev/null; then
  log "building the entrypoint image and the controller"
  hack/local-cluster/build-project-images.sh entrypoint >&2
  CGO_ENABLED=0 go build -trimpath -o bin/pipelineinpod-controller ./cmd/controller
  kubectl apply -f config/100-namespace.yaml -f config/200-serviceaccount.yaml -f config/200-clusterrole.yaml \
    -f config/200-role.yaml -f config/201-clusterrolebinding.yaml -f config/201-rolebinding.yaml \
    -f config/config-logging.yaml -f config/config-observability.yaml -f config/config-leader-election.yaml >&2
  hack/local-cluster/stop-in-netns.sh pipelineinpod-controller >/dev/null 2>&1 || true
  hack/local-cluster/run-in-netns.sh pipelineinpod-controller -- env SYSTEM_NAMESPACE=pipelineinpod \
    KUBERNETES_MIN_VERSION=v1.28.0 "$PWD/bin/pipelineinpod-controller" -kubeconfig "$KUBECONFIG" -disable-ha \
    -pip-entrypoint-image "$PIP_ENTRYPOINT_IMAGE" -shell-image "$TEKTON_SHELL_IMAGE" \
    -workingdirinit-image "$TEKTON_WORKINGDIRINIT_IMAGE" -nop-image "$TEKTON_NOP_IMAGE" \
    -entrypoint-image "$TEKTON_ENTRYPOINT_IMAGE" -sidecarlogresults-image "$TEKTON_SIDECARLOGRESULTS_IMAGE" >&2
  echo "$want" > "$stamp"
fi
exec "$@"
