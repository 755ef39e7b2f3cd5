// Package e2e holds PipelineInPod's end-to-end tests. They run against a real cluster with
// Tekton Pipelines and the PipelineInPod controller, behind the `e2e` build tag:
//
//	make e2e    # = hack/with-cluster.sh go test -tags e2e -count=1 -timeout 30m -v ./test/e2e/
//
// KUBECONFIG names the cluster. Each test runs in a fresh namespace, deleted at its end
// (E2E_KEEP_NAMESPACES=1 keeps them). On failure a test prints the runs, child TaskRuns,
// pods and the tail of the controller's log (its pods' in namespace pipelineinpod, or with
// PIP_CONTROLLER=host $PIP_CLUSTER_DIR/run/logs/pipelineinpod-controller.log).
package e2e
