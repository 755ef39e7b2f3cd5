#!/usr/bin/env bash
# Check that the running local cluster works end to end (about 30 s):
#   1. a pod of two containers sharing an emptyDir, on mirror.gcr.io/ubuntu:latest (IfNotPresent), running bash
#   2. a 5Gi PVC bound by the pv-provisioner and written by a pod; the PV is deleted when the PVC is
#   3. in-cluster API access from a pod through the `kubernetes` Service (10.0.0.1:443) with its token
#   4. a Tekton PipelineRun (one task, echo on mirror.gcr.io/alpine) reaching Succeeded (if Tekton's controller runs)
#   5. tkn version (if tkn is built)
# Objects go to a throwaway namespace, deleted at the end.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
NS=pip-smoke-$$
fail() { log "FAIL: $*"; kc get all,pvc -n "$NS" >&2 || true; exit 1; }
cleanup() { kc delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT
kc create namespace "$NS" >/dev/null
wait_until 30 "service account in $NS" kc get serviceaccount default -n "$NS"
phase_of() { kc get "$1" -n "$NS" -o jsonpath='{.status.phase}' 2>/dev/null; }
wait_pod() { # NAME TIMEOUT -> waits for Succeeded
  local p=$1 t=${2:-90} s ph=''
  s=$(now)
  for _ in $(seq $((t * 5))); do ph=$(phase_of "pod/$p"); case $ph in Succeeded|Failed) break ;; esac; sleep 0.2; done
  log "pod $p: $ph after $(since "$s")s"
  [ "$ph" = Succeeded ] || { kc logs -n "$NS" "$p" --all-containers >&2 || true; kc describe pod -n "$NS" "$p" | tail -20 >&2; return 1; }
}

# 1 ----------------------------------------------------------------------------------------------------------------
kc apply -n "$NS" -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: emptydir-share}
spec:
  restartPolicy: Never
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: writer
    image: mirror.gcr.io/ubuntu:latest
    imagePullPolicy: IfNotPresent
    command: ["bash", "-c", "echo hello-from-writer > /data/msg.tmp && mv /data/msg.tmp /data/msg && echo wrote > /dev/termination-log"]
    volumeMounts: [{name: data, mountPath: /data}]
  - name: reader
    image: mirror.gcr.io/ubuntu:latest
    imagePullPolicy: IfNotPresent
    command: ["bash", "-c", "for i in $(seq 100); do [[ -f /data/msg ]] && break; sleep 0.1; done; cat /data/msg; [[ $(cat /data/msg) == hello-from-writer ]]"]
    volumeMounts: [{name: data, mountPath: /data}]
EOF
wait_pod emptydir-share || fail "emptyDir pod"
[ "$(kc logs -n "$NS" emptydir-share -c reader)" = hello-from-writer ] || fail "kubectl logs"

# 2 ----------------------------------------------------------------------------------------------------------------
kc apply -n "$NS" -f - >/dev/null <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 5Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: pvc-user}
spec:
  restartPolicy: Never
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
  containers:
  - name: c
    image: mirror.gcr.io/alpine:latest
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c", "echo persisted > /data/f && cat /data/f"]
    volumeMounts: [{name: data, mountPath: /data}]
EOF
bound() { [ "$(phase_of pvc/data)" = Bound ]; }
wait_until 30 "PVC bound" bound || fail "PVC not bound"
wait_pod pvc-user || fail "PVC pod"
pv=$(kc get pvc data -n "$NS" -o jsonpath='{.spec.volumeName}')
kc delete pod pvc-user -n "$NS" --wait=true >/dev/null; kc delete pvc data -n "$NS" --wait=true >/dev/null
pv_gone() { ! kc get pv "$pv" >/dev/null 2>&1; }
wait_until 40 "released PV $pv deleted" pv_gone || fail "PV not cleaned up"

# 3 ----------------------------------------------------------------------------------------------------------------
kc create clusterrolebinding "$NS-view" --clusterrole=view --serviceaccount="$NS:default" >/dev/null
kc apply -n "$NS" -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: in-cluster-api}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: mirror.gcr.io/bash:latest
    imagePullPolicy: IfNotPresent
    # no curl in the image: a TCP connect to the Service IP, then the token and CA are there
    command: ["bash", "-c", "exec 3<>/dev/tcp/$KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT && echo connected to $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT && ls /var/run/secrets/kubernetes.io/serviceaccount/"]
EOF
wait_pod in-cluster-api 60 || { kc delete clusterrolebinding "$NS-view" >/dev/null; fail "pod -> kubernetes Service"; }
kc delete clusterrolebinding "$NS-view" >/dev/null

# 4 ----------------------------------------------------------------------------------------------------------------
if is_running tekton-pipelines-controller "$R/netns/tekton-pipelines-controller/main.pid"; then
  kc create -n "$NS" -f - >/dev/null <<'EOF'
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: hello}
spec:
  pipelineSpec:
    results: [{name: said, value: $(tasks.echo.results.out)}]
    tasks:
    - name: echo
      taskSpec:
        results: [{name: out}]
        steps:
        - name: echo
          image: mirror.gcr.io/alpine:latest
          imagePullPolicy: IfNotPresent
          script: |
            #!/bin/sh
            echo hello from tekton
            printf hello > $(results.out.path)
EOF
  s=$(now); st=
  for _ in $(seq 450); do
    st=$(kc get pipelinerun hello -n "$NS" -o jsonpath='{.status.conditions[0].status}' 2>/dev/null)
    [ "$st" = True ] || [ "$st" = False ] && break; sleep 0.2
  done
  log "PipelineRun hello: Succeeded=$st after $(since "$s")s, result=$(kc get pipelinerun hello -n "$NS" -o jsonpath='{.status.results[0].value}')"
  [ "$st" = True ] || { kc get pipelinerun,taskrun,pod -n "$NS" -o yaml | tail -60 >&2; fail "PipelineRun"; }
else
  log "Tekton controller not running: PipelineRun check skipped"
fi

# 5 ----------------------------------------------------------------------------------------------------------------
if [ -x "$BIN/tkn" ]; then KUBECONFIG=$KUBECONFIG_FILE "$BIN/tkn" version >&2 || fail "tkn version"; fi
log "smoke test passed"
