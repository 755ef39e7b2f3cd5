//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

const runLimit = 3 * time.Minute

// A Tekton PipelineRun whose first task is a PipelineInPod (examples/pipelinerun.yaml):
// Tekton creates a CustomRun, the inner Pipeline runs in one pod, and its result feeds the
// next, ordinary, Tekton task.
func TestPipelineRunWithPipelineInPodTask(t *testing.T) {
	e := newEnv(t)
	e.applyExample("clone-build-test.yaml")
	pr := e.createPipelineRun(e.applyExample("pipelinerun.yaml"))
	pr = e.waitPipelineRunDone(pr.Name, runLimit)
	if c := pr.Status.GetCondition(apis.ConditionSucceeded); !c.IsTrue() {
		t.Fatalf("PipelineRun %s: want Succeeded, got %s", pr.Name, cluster.ConditionString(c))
	}

	// The CustomRun Tekton made for the pipeline task in-one-pod.
	cr := e.customRunOf(pr)
	if got := cr.Labels[pipeline.PipelineTaskLabelKey]; got != "in-one-pod" {
		t.Errorf("CustomRun %s: label %s = %q, want in-one-pod", cr.Name, pipeline.PipelineTaskLabelKey, got)
	}
	e.checkSucceeded(cr)
	const summary = "readme=4 code=4" // "hello from a PipelineRun", "one two three four"
	e.checkResults(cr, map[string]string{"summary": summary})
	e.checkSucceededChildren(cr, cloneBuildTestTasks("4"))

	// The next task got the inner pipeline's result as its param, and printed it.
	trs, err := clients.Tekton.TektonV1().TaskRuns(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: pipeline.PipelineRunLabelKey + "=" + pr.Name + "," + pipeline.PipelineTaskLabelKey + "=after"})
	if err != nil {
		t.Fatal(err)
	}
	if len(trs.Items) != 1 {
		t.Fatalf("want one TaskRun for pipeline task after, got %d", len(trs.Items))
	}
	after := &trs.Items[0]
	if c := after.Status.GetCondition(apis.ConditionSucceeded); !c.IsTrue() {
		t.Errorf("TaskRun %s: want Succeeded, got %s", after.Name, cluster.ConditionString(c))
	}
	var param string
	for _, p := range after.Spec.Params {
		if p.Name == "summary" {
			param = p.Value.StringVal
		}
	}
	if param != summary {
		t.Errorf("TaskRun %s: param summary = %q, want the inner pipeline's result %q", after.Name, param, summary)
	}
	if log := e.containerLog(after.Status.PodName, "step-show"); !strings.Contains(log, "inner pipeline said: "+summary) {
		t.Errorf("TaskRun %s: log %q, want it to say %q", after.Name, log, "inner pipeline said: "+summary)
	}

	// Two pods in all: the inner pipeline's one, and Tekton's for the task after.
	pods, err := clients.Kube.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 2 {
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Name)
		}
		t.Errorf("want 2 pods (the PipelineInPod run's and the task after's), got %v", names)
	}
}

// A CustomRun with customRef, naming a Pipeline (examples/customrun.yaml): one pod, one
// child TaskRun per pipeline task, with per-task status.
func TestCustomRunWithCustomRef(t *testing.T) {
	e := newEnv(t)
	docs := e.applyExample("clone-build-test.yaml")
	docs = append(docs, e.applyExample("customrun.yaml")...)
	cr := e.createCustomRun(exampleCustomRun(t, docs))
	cr, took := e.waitCustomRunDone(cr.Name, runLimit)
	t.Logf("CustomRun %s done after %s", cr.Name, took.Round(time.Millisecond))
	e.checkSucceeded(cr)
	e.checkResults(cr, map[string]string{"summary": "readme=4 code=4"}) // "hello from a CustomRun"
	e.checkSucceededChildren(cr, cloneBuildTestTasks("4"))
}

// greetSpec is an inline Pipeline: a result passes from one task to the next, and becomes
// the pipeline's result.
const greetSpec = `
pipelineSpec:
  params:
  - name: who
  results:
  - name: greeting
    value: $(tasks.shout.results.loud)
  tasks:
  - name: greet
    params: [{name: who, value: $(params.who)}]
    taskSpec:
      params: [{name: who}]
      results: [{name: text}]
      steps:
      - name: say
        image: ` + busybox + `
        script: echo -n "hello $(params.who)" | tee $(results.text.path)
  - name: shout
    params: [{name: text, value: $(tasks.greet.results.text)}]
    taskSpec:
      params: [{name: text}]
      results: [{name: loud}]
      steps:
      - name: upper
        image: ` + busybox + `
        script: echo -n "$(params.text)" | tr a-z A-Z | tee $(results.loud.path)
      - name: check
        image: ` + busybox + `
        script: test "$(params.text)" = "hello e2e"
`

// A CustomRun with customSpec (an inline pipelineSpec), and `tkn customrun describe` on it.
func TestCustomRunWithCustomSpec(t *testing.T) {
	e := newEnv(t)
	cr := e.createCustomRun(inlineCustomRun(t, "greet-", greetSpec, stringParam("who", "e2e")))
	cr, took := e.waitCustomRunDone(cr.Name, runLimit)
	t.Logf("CustomRun %s done after %s", cr.Name, took.Round(time.Millisecond))
	e.checkSucceeded(cr)
	e.checkResults(cr, map[string]string{"greeting": "HELLO E2E"})
	e.checkSucceededChildren(cr, map[string]wantTask{
		"greet": {memberOf: "tasks", steps: []string{"say"}, results: map[string]string{"text": "hello e2e"}},
		"shout": {memberOf: "tasks", steps: []string{"upper", "check"}, results: map[string]string{"loud": "HELLO E2E"}},
	})

	// tkn v0.46.0's `customrun describe` crashes in its template on a CustomRun that has
	// workspaces ("expected v1.WorkspaceBinding; got v1beta1.WorkspaceBinding"), a tkn
	// bug; this run has none.
	out := tkn(t, "customrun", "describe", cr.Name, "-n", e.ns)
	t.Logf("tkn customrun describe:\n%s", out)
	for _, want := range []string{cr.Name, e.ns, "Succeeded", "greeting", "HELLO E2E"} {
		if !strings.Contains(out, want) {
			t.Errorf("tkn customrun describe does not show %q", want)
		}
	}
	if !regexpMatch(`(?m)^Name:\s+`+cr.Name+`$`, out) {
		t.Errorf("tkn customrun describe: no line `Name: %s`", cr.Name)
	}
	if !regexpMatch(`(?m)^\s*(\S+\s+)?greeting\s+HELLO E2E\s*$`, out) {
		t.Errorf("tkn customrun describe: no results line for greeting = HELLO E2E")
	}
	if !regexpMatch(`(?m)\s+Succeeded\s*$`, out) {
		t.Errorf("tkn customrun describe: no status Succeeded")
	}
}

// podGoneOrGoing tells whether the pod is deleted or being deleted.
func podGoneOrGoing(e *env, name string) (bool, string) {
	p, err := clients.Kube.CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, "deleted"
	}
	if err != nil {
		return false, err.Error()
	}
	if p.DeletionTimestamp != nil {
		return true, "terminating"
	}
	return false, "phase " + string(p.Status.Phase) + ", not being deleted"
}

func taskRunDone(tr *v1.TaskRun) bool {
	c := tr.Status.GetCondition(apis.ConditionSucceeded)
	return c != nil && !c.IsUnknown()
}
