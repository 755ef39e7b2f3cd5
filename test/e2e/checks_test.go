//go:build e2e

package e2e

import (
	"fmt"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonpod "github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

// wantTask is what one child TaskRun of a run must show.
type wantTask struct {
	memberOf string            // tasks or finally
	steps    []string          // the step names, in order
	results  map[string]string // the TaskRun's results (exactly)
}

// checkSucceeded fails the test unless the CustomRun succeeded.
func (e *env) checkSucceeded(cr *v1beta1.CustomRun) {
	e.t.Helper()
	c := cr.Status.GetCondition(apis.ConditionSucceeded)
	if c == nil || !c.IsTrue() {
		e.t.Fatalf("CustomRun %s: want Succeeded, got %s", cr.Name, cluster.ConditionString(c))
	}
	if c.Reason != string(v1beta1.CustomRunReasonSuccessful) {
		e.t.Errorf("CustomRun %s: reason %q, want %q", cr.Name, c.Reason, v1beta1.CustomRunReasonSuccessful)
	}
	if cr.Status.StartTime == nil || cr.Status.CompletionTime == nil {
		e.t.Errorf("CustomRun %s: start %v, completion %v: want both", cr.Name, cr.Status.StartTime, cr.Status.CompletionTime)
	}
}

// checkResults fails the test unless the CustomRun's results are exactly want.
func (e *env) checkResults(cr *v1beta1.CustomRun, want map[string]string) {
	e.t.Helper()
	got := crResults(cr)
	if len(got) != len(want) {
		e.t.Errorf("CustomRun %s: results %v, want %v", cr.Name, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			e.t.Errorf("CustomRun %s: result %s = %q, want %q (all: %v)", cr.Name, k, got[k], v, got)
		}
	}
}

// checkSucceededChildren checks the one pod of a succeeded CustomRun and its child
// TaskRuns: one per pipeline task, each with its own status (condition, steps with
// their containers, start and completion times, results), labels, owner and pod name.
func (e *env) checkSucceededChildren(cr *v1beta1.CustomRun, want map[string]wantTask) {
	e.t.Helper()
	// A run this short ends (its tasks' states say so) before the kubelet has moved the
	// pod's phase on from Pending: tasks start as their own containers do.
	e.poll(30*time.Second, "the pod of "+cr.Name+" to leave phase Pending", func() (bool, string) {
		pods := e.podsOf(cr.Name)
		if len(pods) != 1 {
			return false, fmt.Sprintf("%d pods", len(pods))
		}
		return pods[0].Status.Phase != corev1.PodPending, string(pods[0].Status.Phase)
	})
	pod := e.onePod(cr.Name)
	if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodRunning {
		e.t.Errorf("pod %s: phase %s, want Succeeded (or Running while it winds down)", pod.Name, pod.Status.Phase)
	}
	for _, c := range pod.Spec.Containers {
		if !tektonpod.IsContainerStep(c.Name) {
			e.t.Errorf("pod %s: container %q does not start with step- (Tekton's stopSidecars would stop it)", pod.Name, c.Name)
		}
	}
	trs := e.childTaskRuns(cr.Name)
	if len(trs) != len(want) {
		var got []string
		for k := range trs {
			got = append(got, k)
		}
		e.t.Errorf("CustomRun %s: %d child TaskRuns %v, want one per pipeline task (%d)", cr.Name, len(trs), got, len(want))
	}
	summary := observe.DecodeSummary(cr.Status.ExtraFields)
	if summary.PodName != pod.Name {
		e.t.Errorf("CustomRun %s: extraFields podName %q, want %q", cr.Name, summary.PodName, pod.Name)
	}
	containers := map[string]string{}
	for task, w := range want {
		tr, ok := trs[task]
		if !ok {
			e.t.Errorf("no child TaskRun for pipeline task %q", task)
			continue
		}
		where := "TaskRun " + tr.Name + " (" + task + ")"
		if c := tr.Status.GetCondition(apis.ConditionSucceeded); c == nil || !c.IsTrue() {
			e.t.Errorf("%s: want Succeeded, got %s", where, cluster.ConditionString(c))
		}
		for k, v := range map[string]string{pipeline.CustomRunKey: cr.Name, pipeline.PipelineTaskLabelKey: task, pipeline.MemberOfLabelKey: w.memberOf} {
			if tr.Labels[k] != v {
				e.t.Errorf("%s: label %s = %q, want %q", where, k, tr.Labels[k], v)
			}
		}
		owned := false
		for _, o := range tr.OwnerReferences {
			owned = owned || (o.UID == cr.UID && o.Kind == "CustomRun")
		}
		if !owned {
			e.t.Errorf("%s: not owned by CustomRun %s: %v", where, cr.Name, tr.OwnerReferences)
		}
		if tr.Status.PodName != pod.Name {
			e.t.Errorf("%s: status.podName %q, want the run's pod %q", where, tr.Status.PodName, pod.Name)
		}
		if tr.Status.StartTime == nil || tr.Status.CompletionTime == nil {
			e.t.Errorf("%s: start %v, completion %v: want both", where, tr.Status.StartTime, tr.Status.CompletionTime)
		} else if tr.Status.CompletionTime.Before(tr.Status.StartTime) {
			e.t.Errorf("%s: completion %v before start %v", where, tr.Status.CompletionTime, tr.Status.StartTime)
		}
		if len(tr.Status.Steps) != len(w.steps) {
			e.t.Errorf("%s: %d steps in status, want %v", where, len(tr.Status.Steps), w.steps)
		}
		for i, s := range tr.Status.Steps {
			if i < len(w.steps) && s.Name != w.steps[i] {
				e.t.Errorf("%s: step %d is %q, want %q", where, i, s.Name, w.steps[i])
			}
			if !tektonpod.IsContainerStep(s.Container) {
				e.t.Errorf("%s: step %q has container %q, want a step- container", where, s.Name, s.Container)
			}
			if other, dup := containers[s.Container]; dup {
				e.t.Errorf("%s: step %q has container %q, which %s has too", where, s.Name, s.Container, other)
			}
			containers[s.Container] = where
			if !podHasContainer(pod, s.Container) {
				e.t.Errorf("%s: step %q names container %q, which pod %s does not have", where, s.Name, s.Container, pod.Name)
			}
			if s.Terminated == nil || s.Terminated.ExitCode != 0 {
				e.t.Errorf("%s: step %q: %s, want terminated with exit code 0", where, s.Name, containerState(s.ContainerState))
			}
		}
		got := trResults(tr)
		if len(got) != len(w.results) {
			e.t.Errorf("%s: results %v, want %v", where, got, w.results)
		}
		for k, v := range w.results {
			if got[k] != v {
				e.t.Errorf("%s: result %s = %q, want %q", where, k, got[k], v)
			}
		}
		if ts, ok := summary.Task(tr.Name); !ok || ts.State != plan.PhaseSucceeded || ts.PipelineTaskName != task || ts.MemberOf != w.memberOf {
			e.t.Errorf("%s: extraFields entry %+v (found %v), want state Succeeded", where, ts, ok)
		}
	}
}

func podHasContainer(pod corev1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// cloneBuildTestTasks is what examples/clone-build-test.yaml's tasks show when the
// greeting has greetingWords words (the code file has four).
func cloneBuildTestTasks(greetingWords string) map[string]wantTask {
	return map[string]wantTask{
		"clone":       {memberOf: "tasks", steps: []string{"write"}},
		"test-readme": {memberOf: "tasks", steps: []string{"count"}, results: map[string]string{"count": greetingWords}},
		"test-code":   {memberOf: "tasks", steps: []string{"count"}, results: map[string]string{"count": "4"}},
		"report":      {memberOf: "tasks", steps: []string{"report"}, results: map[string]string{"summary": "readme=" + greetingWords + " code=4"}},
		"notify":      {memberOf: "finally", steps: []string{"notify"}},
	}
}
