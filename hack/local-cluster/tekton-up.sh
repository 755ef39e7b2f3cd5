#!/usr/bin/env bash
# Install Tekton Pipelines $TEKTON_VERSION on the running local cluster and start its controller. Idempotent;
# called by up.sh, or on its own (the cluster must be up).
#
# - CRDs from the module's config/300-crds (server-side apply).
# - Tekton's admission webhook (defaulting, validation, conversion) in a pod, as Tekton's release runs it
#   (tekton-webhook.sh).
# - Tekton's remote resolvers (cluster, bundles, git) in a pod, as Tekton's release runs them (tekton-resolvers.sh).
# - Namespace tekton-pipelines and the config maps of config/ (created when missing, so local edits to e.g.
#   feature-flags survive a restart; pipelines-info gets the real version for `tkn version`).
# - The controller runs on the host (not in a pod) with -kubeconfig, inside run-in-netns.sh (name
#   tekton-pipelines-controller, log run/logs/tekton-pipelines-controller.log), with the images built here, and
#   with -disable-ha: one replica needs no leader election, and a restart after a kill does not wait for the
#   previous instance's leases to expire (~60 s).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
kc get --raw /readyz >/dev/null 2>&1 || die "the cluster is not up (run hack/local-cluster/up.sh)"

"$LC_DIR/build-tekton.sh"
"$LC_DIR/build-images.sh"
"$LC_DIR/import-images.sh"

CFG=$(tekton_src)/config
[ -d "$CFG/300-crds" ] || die "Tekton config not found at $CFG"

kc apply -f "$CFG/100-namespace/" >/dev/null
kc apply --server-side --force-conflicts --field-manager=pipelineinpod-local-cluster -f "$CFG/300-crds/" >/dev/null
kc wait --for=condition=Established --timeout=60s -f "$CFG/300-crds/" >/dev/null
log "Tekton CRDs established"
# Aggregated roles so namespaced service accounts with edit/view can use Tekton objects.
kc apply -f "$CFG/clusterrole-aggregate-edit.yaml" -f "$CFG/clusterrole-aggregate-view.yaml" >/dev/null
for f in "$CFG"/config-*.yaml; do
  if [ "$(basename "$f")" = config-info.yaml ]; then
    sed "s/version: \"devel\"/version: \"$TEKTON_VERSION\"/" "$f" | kc apply -f - >/dev/null
  else
    out=$(kc create -f "$f" --save-config 2>&1) || grep -q AlreadyExists <<< "$out" || die "$f: $out"
  fi
done
log "Tekton namespace and config maps present"
"$LC_DIR/tekton-webhook.sh"
"$LC_DIR/tekton-resolvers.sh"

CONTROLLER=tekton-pipelines-controller
if is_running "$CONTROLLER" "$R/netns/$CONTROLLER/main.pid"; then log "Tekton controller already running"; exit 0; fi
LOGF=$R/logs/$CONTROLLER.log
OFFSET=$(stat -c %s "$LOGF" 2>/dev/null || echo 0)
I=$TEKTON_IMAGE_PREFIX
T=$TEKTON_VERSION
# Environment of the upstream Deployment (config/controller.yaml); SYSTEM_NAMESPACE is mandatory out of cluster.
"$LC_DIR/run-in-netns.sh" "$CONTROLLER" -- env \
  SYSTEM_NAMESPACE=tekton-pipelines KUBERNETES_MIN_VERSION=v1.28.0 \
  CONFIG_DEFAULTS_NAME=config-defaults CONFIG_LOGGING_NAME=config-logging \
  CONFIG_OBSERVABILITY_NAME=config-observability CONFIG_FEATURE_FLAGS_NAME=feature-flags \
  CONFIG_LEADERELECTION_NAME=config-leader-election-controller CONFIG_SPIRE=config-spire \
  METRICS_DOMAIN=tekton.dev/pipeline \
  "$TEKTON_BIN/controller" -kubeconfig "$KUBECONFIG_FILE" -disable-ha \
  -entrypoint-image "$I/entrypoint:$T" -nop-image "$I/nop:$T" -sidecarlogresults-image "$I/sidecarlogresults:$T" \
  -workingdirinit-image "$I/workingdirinit:$T" -shell-image "$I/shell:$T" -shell-image-win "$I/shell:$T"

started() { tail -c +$((OFFSET + 1)) "$LOGF" | grep -q 'Started workers.*pipelinerun'; }
wait_until 90 "Tekton controller workers started" started
