#!/usr/bin/env bash
# make demo: run this repository's example Pipeline in one Pod, and show it.
#
#   hack/demo.sh
#
# Without KUBECONFIG (or with the local cluster's) it goes through hack/with-cluster.sh,
# which brings up the local single-node cluster with Tekton if needed and (re)starts this
# checkout's controller. With KUBECONFIG naming another cluster, PipelineInPod must be
# installed there already (`ko apply -f config/`).
#
# In namespace pipelineinpod-demo (created if missing; runs of an earlier demo are
# deleted first, so it can be run again) it applies examples/clone-build-test.yaml, then
# runs:
#   - examples/pipelinerun.yaml: a Tekton PipelineRun whose first task is the whole
#     clone-build-test Pipeline in one pod, and whose second task uses its result;
#   - examples/customrun.yaml: the same Pipeline as a CustomRun (customRef);
#   - an inline CustomRun (customSpec with a pipelineSpec), for `tkn customrun describe`:
#     tkn v0.46.0 crashes describing a CustomRun that has workspaces ("expected
#     v1.WorkspaceBinding; got v1beta1.WorkspaceBinding"), which the two above have.
# It waits for all three, shows them, and exits non-zero if any did not succeed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PIP_DEMO_INSIDE:-}" ]; then
  export PIP_DEMO_INSIDE=1
  exec hack/with-cluster.sh "$0" "$@"
fi
if [ -d "${PIP_CLUSTER_DIR:-/var/tmp/pipelineinpod-cluster}/bin" ]; then
  PATH=${PIP_CLUSTER_DIR:-/var/tmp/pipelineinpod-cluster}/bin:$PATH
fi

ns=${PIP_DEMO_NAMESPACE:-pipelineinpod-demo}
limit=${PIP_DEMO_TIMEOUT:-300}
if [ -t 1 ]; then bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }; else bold() { printf '\n== %s\n' "$*"; }; fi
k() { kubectl -n "$ns" "$@"; }

bold "namespace $ns"
kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"
for _ in $(seq 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.1; done
# Runs of an earlier demo go, with their TaskRuns and pods (owner references).
k delete pipelineruns.tekton.dev,customruns.tekton.dev --all --ignore-not-found --wait=true >/dev/null
k apply -f examples/clone-build-test.yaml

bold "starting the runs"
started=$SECONDS
pr=$(k create -f examples/pipelinerun.yaml -o jsonpath='{.metadata.name}')
echo "PipelineRun $pr (examples/pipelinerun.yaml)"
cr=$(k create -f examples/customrun.yaml -o jsonpath='{.metadata.name}')
echo "CustomRun $cr (examples/customrun.yaml)"
inline=$(k create -o jsonpath='{.metadata.name}' -f - <<EOF
apiVersion: tekton.dev/v1beta1
kind: CustomRun
metadata:
  generateName: greet-
spec:
  customSpec:
    apiVersion: tekton.dev/v1alpha1
    kind: PipelineInPod
    spec:
      pipelineSpec:
        params: [{name: who}]
        results:
        - {name: greeting, value: \$(tasks.shout.results.loud)}
        tasks:
        - name: greet
          params: [{name: who, value: \$(params.who)}]
          taskSpec:
            params: [{name: who}]
            results: [{name: text}]
            steps:
            - name: say
              image: docker.io/library/busybox:1.37.0
              script: echo -n "hello \$(params.who)" | tee \$(results.text.path)
        - name: shout
          params: [{name: text, value: \$(tasks.greet.results.text)}]
          taskSpec:
            params: [{name: text}]
            results: [{name: loud}]
            steps:
            - name: upper
              image: docker.io/library/busybox:1.37.0
              script: echo -n "\$(params.text)" | tr a-z A-Z | tee \$(results.loud.path)
  params:
  - {name: who, value: one pod}
EOF
)
echo "CustomRun $inline (inline pipelineSpec)"

# wait KIND NAME: until the run's Succeeded condition is True or False; prints it.
wait_run() {
  local kind=$1 name=$2 status=""
  while [ $((SECONDS - started)) -lt "$limit" ]; do
    status=$(k get "$kind" "$name" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}' 2>/dev/null || true)
    if [ "$status" = True ] || [ "$status" = False ]; then break; fi
    sleep 0.5
  done
  printf '%-12s %-30s %s (seen %ss after the start): %s\n' "$kind" "$name" \
    "$(k get "$kind" "$name" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].reason}' 2>/dev/null)" \
    $((SECONDS - started)) "$(k get "$kind" "$name" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].message}' 2>/dev/null)"
  [ "$status" = True ]
}

bold "waiting (up to ${limit}s)"
failed=0
wait_run pipelinerun "$pr" || failed=1
wait_run customrun "$cr" || failed=1
wait_run customrun "$inline" || failed=1

# The CustomRun Tekton made for the PipelineRun's PipelineInPod task.
prcr=$(k get customruns -l "tekton.dev/pipelineRun=$pr" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)

bold "PipelineRun $pr: a PipelineInPod task, then an ordinary Tekton task using its result"
k get pipelinerun "$pr"
k get customruns,taskruns -l "tekton.dev/pipelineRun=$pr"
after_pod=$(k get taskruns -l "tekton.dev/pipelineRun=$pr,tekton.dev/pipelineTask=after" -o jsonpath='{.items[0].status.podName}' 2>/dev/null || true)
if [ -n "$after_pod" ]; then
  echo "log of the task after: $(k logs "$after_pod" -c step-show 2>&1 | tail -1)"
fi
if [ -n "$prcr" ]; then
  echo "its CustomRun $prcr ran the inner Pipeline in pod(s):"
  k get pods -l "tekton.dev/customRun=$prcr"
fi

bold "CustomRun $cr (customRef: clone-build-test)"
k get customrun "$cr"
echo
echo "\$ kubectl get taskruns -l tekton.dev/customRun=$cr"
k get taskruns -l "tekton.dev/customRun=$cr" \
  -o custom-columns='NAME:.metadata.name,PIPELINE TASK:.metadata.labels.tekton\.dev/pipelineTask,MEMBER OF:.metadata.labels.tekton\.dev/memberOf,SUCCEEDED:.status.conditions[0].status,REASON:.status.conditions[0].reason,POD:.status.podName'
echo
echo "\$ kubectl get pods -l tekton.dev/customRun=$cr"
k get pods -l "tekton.dev/customRun=$cr"
echo
echo "pipeline result: $(k get customrun "$cr" -o jsonpath='{range .status.results[*]}{.name}={.value}{"\n"}{end}')"

bold "tkn customrun describe $inline -n $ns"
tkn customrun describe "$inline" -n "$ns" || failed=1
echo
echo "\$ kubectl get taskruns -l tekton.dev/customRun=$inline"
k get taskruns -l "tekton.dev/customRun=$inline"
echo "\$ kubectl get pods -l tekton.dev/customRun=$inline"
k get pods -l "tekton.dev/customRun=$inline"

if [ "$failed" != 0 ]; then
  bold "a run did not succeed"
  k get customruns,pipelineruns,taskruns,pods
  exit 1
fi
bold "demo: all runs Succeeded (namespace $ns kept; run again to repeat)"
