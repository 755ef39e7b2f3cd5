#!/usr/bin/env bash
# Run a command against a cluster where PipelineInPod runs.
#
#   hack/with-cluster.sh CMD [ARGS...]
#
# With KUBECONFIG naming another cluster, PipelineInPod must already be installed there
# (`ko apply -f config/`); the command just runs. Otherwise (KUBECONFIG unset, or the
# local cluster's), the local cluster is brought up if needed (hack/local-cluster/up.sh,
# idempotent: it also runs the local image registry), and PipelineInPod is installed the
# way users install it:
#
#   KO_DOCKER_REPO=127.0.0.1:5000/pipelineinpod ko apply -f config/
#
# so the controller runs in the cluster as config/'s Deployment, under its ServiceAccount
# and RBAC, with the images config/ names (ko:// ones built from this checkout and from
# the Tekton module go.mod pins). Only ko's base image is the local registry's
# (KO_DEFAULTBASEIMAGE), and only linux/amd64 is built. It is reinstalled only when this
# checkout changed since the last install, so `make e2e conformance` installs once.
#
# PIP_CONTROLLER=host: a development shortcut instead: this checkout's controller built
# and run on the host in a loopback-only network namespace (docs/local-cluster.md:
# Knative controllers bind *:8080/*:9090), with the cluster-admin kubeconfig; config/'s
# Deployment is scaled to 0 meanwhile. Its log: $PIP_CLUSTER_DIR/run/logs/pipelineinpod-controller.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
local_kubeconfig=${PIP_CLUSTER_DIR:-/var/tmp/pipelineinpod-cluster}/kubeconfig

if [ -n "${KUBECONFIG:-}" ] && [ "$KUBECONFIG" != "$local_kubeconfig" ]; then
  exec "$@"
fi

log() { echo "[with-cluster $(date +%H:%M:%S)] $*" >&2; }
d=${PIP_CLUSTER_DIR:-/var/tmp/pipelineinpod-cluster}
# (a cluster brought up by an older checkout may lack the registry or ko: up.sh adds them)
if ! { [ -f "$local_kubeconfig" ] && KUBECONFIG=$local_kubeconfig "$d/bin/kubectl" get --raw /readyz >/dev/null 2>&1 &&
       [ -x "$d/bin/ko" ] && curl -fs "http://${PIP_REGISTRY:-127.0.0.1:5000}/v2/" >/dev/null; }; then
  log "bringing up the local cluster"
  hack/local-cluster/up.sh >/dev/null
fi
# shellcheck source=local-cluster/env.sh
source hack/local-cluster/env.sh

mode=${PIP_CONTROLLER:-incluster}
ns=pipelineinpod
deploy=deployment/pipelineinpod-controller

# What is installed is rebuilt only when this checkout (sources, config/, .ko.yaml) or the
# mode changed since it was installed.
stamp=$PIP_CLUSTER_DIR/run/pipelineinpod-controller.stamp
want=$mode-$(git rev-parse HEAD 2>/dev/null)-$( (git diff HEAD 2>/dev/null; git ls-files --others --exclude-standard -z cmd pkg config | xargs -0r cat) | sha256sum | cut -c1-16)

case $mode in
incluster)
  hack/local-cluster/stop-in-netns.sh pipelineinpod-controller >/dev/null 2>&1 || true
  ready=$(kubectl -n $ns get $deploy -o jsonpath='{.status.readyReplicas}/{.spec.replicas}' 2>/dev/null || true)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ "$ready" != 1/1 ]; then
    t=$(date +%s)
    log "installing PipelineInPod: ko apply -f config/ (KO_DOCKER_REPO=$PIP_KO_DOCKER_REPO)"
    KO_DOCKER_REPO=$PIP_KO_DOCKER_REPO KO_DEFAULTBASEIMAGE=$PIP_KO_BASE_IMAGE KO_DEFAULTPLATFORMS=linux/amd64 \
      ko apply -f config/ >&2
    # Back from PIP_CONTROLLER=host, or scaled down by hand.
    kubectl -n $ns scale $deploy --replicas=1 >/dev/null
    kubectl -n $ns rollout status $deploy --timeout=300s >&2
    # The new pod reconciles only once it holds every lease (knative's leader election):
    # the old pod releases them when it stops, a killed one's expire. Wait for that, so the
    # command starts with a working controller.
    leading=false
    for _ in $(seq 180); do
      pods=$(kubectl -n $ns get pods -l app.kubernetes.io/name=controller,app.kubernetes.io/part-of=pipelineinpod -o json |
        jq -r '.items | map(.metadata.name) | join(" ")')
      if [ -n "$pods" ] && [ "$(wc -w <<< "$pods")" = 1 ]; then
        leading=$(kubectl -n $ns get leases -o json |
          jq -r --arg p "$pods" '.items | length > 0 and all(.spec.holderIdentity // "" | startswith($p + "_"))')
        [ "$leading" = true ] && break
      fi
      sleep 1
    done
    [ "$leading" = true ] || { log "the controller ($pods) does not hold its leases"; kubectl -n $ns get pods,leases >&2; exit 1; }
    echo "$want" > "$stamp"
    log "PipelineInPod installed and leading ($pods) in $(( $(date +%s) - t ))s"
  fi
  ;;
host)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! pgrep -f "bin/pipelineinpod-controller" >/dev/null; then
    log "building the entrypoint image and the controller (PIP_CONTROLLER=host)"
    kubectl -n $ns scale $deploy --replicas=0 >/dev/null 2>&1 || true
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
  ;;
*) log "PIP_CONTROLLER=$mode: expected incluster (default) or host"; exit 2 ;;
esac
exec "$@"
