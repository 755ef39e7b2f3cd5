#!/usr/bin/env bash
# Run Tekton's own admission webhook (defaulting, validation, CRD conversion) in the local cluster as Tekton's
# release installs it: the pinned module's config/ files for it, its image built by ko from that module into the
# local registry. Every object anyone creates (our child TaskRuns, ResolutionRequests, CustomRuns) then passes
# Tekton's admission as on a real cluster. The API server reaches the webhook at its Service's endpoints
# (up.sh: --enable-aggregator-routing; there is no kube-proxy). Idempotent; called by tekton-up.sh.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
kc get --raw /readyz >/dev/null 2>&1 || die "the cluster is not up (run hack/local-cluster/up.sh)"

CFG=$(tekton_src)/config
NS=tekton-pipelines
DEPLOY=deployment/tekton-pipelines-webhook
stamp=$R/tekton-webhook.stamp
ready=$(kc -n $NS get $DEPLOY -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
if [ "$(cat "$stamp" 2>/dev/null)" = "$TEKTON_VERSION" ] && [ "$ready" = 1 ]; then
  log "Tekton webhook already running"
  exit 0
fi

# shellcheck source=env.sh
source "$LC_DIR/env.sh"
# ko builds ko://github.com/tektoncd/pipeline/cmd/webhook in a tool module of its own that pins Tekton
# $TEKTON_VERSION (this project's module does not link the webhook, so its go.sum lacks the webhook's dependencies).
go_env
W=$SRC/tekton-webhook
tool_module "$W" tekton-webhook "$TEKTON_VERSION" github.com/tektoncd/pipeline/cmd/webhook
t=$(now)
(cd "$W" && KO_DOCKER_REPO=$PIP_REGISTRY/tektoncd KO_DEFAULTBASEIMAGE=$PIP_KO_BASE_IMAGE \
  KO_DEFAULTPLATFORMS=linux/amd64 "$BIN/ko" resolve \
  -f "$CFG/200-serviceaccount.yaml" -f "$CFG/200-clusterrole.yaml" -f "$CFG/200-role.yaml" \
  -f "$CFG/201-clusterrolebinding.yaml" -f "$CFG/201-rolebinding.yaml" -f "$CFG/webhook.yaml" \
  -f "$CFG/500-webhooks.yaml") > "$R/tekton-webhook.yaml" 2> "$R/logs/tekton-webhook-ko.log" ||
  { tail -20 "$R/logs/tekton-webhook-ko.log" >&2; die "ko resolve of Tekton's webhook failed"; }
log "Tekton webhook image built and pushed in $(since "$t")s"
kc apply -f "$R/tekton-webhook.yaml" >/dev/null
kc -n $NS rollout status $DEPLOY --timeout=300s >&2

# The webhook fills its certificate into the webhook configurations and the CRDs' conversion; admission works
# once a dry-run create goes through it (defaulting sets the TaskRun's serviceAccountName).
admits() {
  [ "$(kc create --dry-run=server -o jsonpath='{.spec.serviceAccountName}' -f - 2>/dev/null <<'YAML'
apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: webhook-probe, namespace: default}
spec: {taskSpec: {steps: [{name: s, image: busybox, script: "true"}]}}
YAML
  )" = default ]
}
wait_until 120 "Tekton webhook admitting" admits
echo "$TEKTON_VERSION" > "$stamp"
log "Tekton webhook running"
