package reconciler

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

var taskC = taskDef{name: "c", steps: 1}

// A task skipped while the run goes on: its never-run TaskRun goes once the summary
// records it, and if the pod (with its report) then disappears, the summary still
// counts it as skipped, not as a task the pod's end cancelled.
func TestSkippedWhileRunningThenPodDeleted(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, finalState(taskB, plan.PhaseSkipped, string(v1.WhenExpressionsSkip), 0, time.Second), runningState(taskA, time.Second))
	h.reconcile()
	if v := h.view(); v.TaskRuns["b"] != pending {
		t.Fatalf("b before its skip is recorded: %+v", v)
	}
	h.reconcile()
	want := view{Condition: unknownRunning, TaskRuns: map[string]string{"a": unknownRunning}, Pods: pods0}
	if d := cmp.Diff(want, h.view()); d != "" {
		t.Fatalf("once recorded (-want +got):\n%s", d)
	}
	must(t, h.kube.CoreV1().Pods(ns).Delete(h.ctx, plan.PodName("run", 0), metav1.DeleteOptions{}))
	h.reconcile()
	cr := h.cr()
	c := cr.Status.GetCondition(apis.ConditionSucceeded)
	if cond(c) != "False/"+observe.ReasonPodDeleted || !strings.Contains(c.Message, "running: a") {
		t.Errorf("after the pod's deletion: %s %q", cond(c), c.Message)
	}
	s := observe.DecodeSummary(cr.Status.ExtraFields)
	if ts, ok := s.Task(trName("run", "b")); !ok || ts.State != plan.PhaseSkipped || ts.Reason != string(v1.WhenExpressionsSkip) {
		t.Errorf("summary entry of b = %+v (%v), want it still Skipped", ts, ok)
	}
	if _, taskRuns := count(h); taskRuns != 1 {
		t.Errorf("%d TaskRuns, want a's only", taskRuns)
	}
}

// The pod goes in the very reconcile that deletes the skipped task's TaskRun: the task,
// listed from the TaskRuns that were there, still ends Skipped, not cancelled.
func TestSkippedRecordedAsThePodGoes(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, finalState(taskB, plan.PhaseSkipped, string(v1.WhenExpressionsSkip), 0, time.Second), runningState(taskA, time.Second))
	h.reconcile()
	must(t, h.kube.CoreV1().Pods(ns).Delete(h.ctx, plan.PodName("run", 0), metav1.DeleteOptions{}))
	h.reconcile()
	want := view{Condition: "False/" + observe.ReasonPodDeleted, TaskRuns: map[string]string{"a": "False/" + observe.ReasonPodDeleted}}
	if d := cmp.Diff(want, h.view()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	s := observe.DecodeSummary(h.cr().Status.ExtraFields)
	if ts, ok := s.Task(trName("run", "b")); !ok || ts.State != plan.PhaseSkipped {
		t.Errorf("summary entry of b = %+v (%v), want it still Skipped", ts, ok)
	}
}

// A TaskRun that ran in an earlier attempt of the CustomRun keeps its history: skipped
// in a later attempt, it is kept and ends TaskRunSkipped, its retriesStatus intact.
func TestSkippedTaskRunWithHistoryIsKept(t *testing.T) {
	cr := newCustomRun("run")
	cr.Spec.Retries = 1
	h := newHarness(t, cr, taskA, taskB)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, true, finalState(taskA, plan.PhaseFailed, "Failed", 0, time.Second), finalState(taskB, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second))
	h.clock.SetTime(t0.Add(3 * time.Second))
	h.reconcile() // attempt 0 fails, retried
	h.reconcile() // attempt 1 starts
	h.setPod(1, running)
	h.report(1, true, finalState(taskA, plan.PhaseSucceeded, "Succeeded", 4*time.Second, 5*time.Second),
		finalState(taskB, plan.PhaseSkipped, string(v1.WhenExpressionsSkip), 0, 5*time.Second))
	h.reconcile()
	h.reconcile()
	want := view{Condition: "True/Succeeded", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "False/" + observe.ReasonTaskRunSkipped},
		Pods: []string{"run-pod", "run-pod-retry1"}, Retries: 1}
	if d := cmp.Diff(want, h.view()); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	if b := h.taskRun("b"); len(b.Status.RetriesStatus) != 1 || cond(b.Status.RetriesStatus[0].GetCondition(apis.ConditionSucceeded)) != "True/Succeeded" {
		t.Errorf("b's history: %+v", b.Status.RetriesStatus)
	}
}

// Child TaskRuns get the events Tekton's TaskRun reconciler emits for its own: Started,
// then Succeeded or Failed (a warning), once each.
func TestTaskRunEvents(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB, taskC)
	h.reconcile()
	if ev := h.taskRunEvents(); len(ev) != 0 {
		t.Errorf("pending TaskRuns: events %q", ev)
	}
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	h.reconcile()
	h.reconcile()
	if d := cmp.Diff([]string{"Normal Started "}, h.taskRunEvents()); d != "" {
		t.Errorf("a starts (-want +got):\n%s", d)
	}
	// b goes from nothing to failed between two looks: it still gets its Started.
	h.report(0, false, finalState(taskA, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second),
		finalState(taskB, plan.PhaseFailed, "Failed", 2*time.Second, 3*time.Second), runningState(taskC, 3*time.Second))
	h.reconcile()
	// The three TaskRuns' statuses are written concurrently: their events come in any
	// order (one TaskRun's stay in order: its writes are sequential).
	want := []string{
		"Normal Started ",
		"Normal Started ",
		"Normal Succeeded All Steps have completed executing",
		`Warning Failed "step-b-s0" exited with code 1`,
	}
	if d := cmp.Diff(want, h.taskRunEvents(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); d != "" {
		t.Errorf("a succeeds, b fails, c starts (-want +got):\n%s", d)
	}
}

// What the Tekton Dashboard's TaskRun view reads: status.podName names the pod, and every
// step, in the status and in each retriesStatus entry, names a container of that pod
// that is this task's own step (the Dashboard reads each step's log from it).
func TestTaskRunStatusForTheDashboard(t *testing.T) {
	retried := taskDef{name: "flaky", steps: 2}
	h := newHarness(t, newCustomRun("run"), taskA, retried)
	h.reconcile()
	h.setPod(0, running)
	failed := finalState(retried, plan.PhaseFailed, "Failed", time.Second, 2*time.Second)
	final := finalState(retried, plan.PhaseSucceeded, "Succeeded", 2*time.Second, 3*time.Second)
	final.RetryCount, final.Attempts = 1, []plan.TaskState{failed}
	h.report(0, true, finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second), final)
	h.reconcile()
	pod := h.pod(0)
	containers := map[string]bool{}
	for _, c := range pod.Spec.Containers {
		containers[c.Name] = true
	}
	for _, d := range []taskDef{taskA, retried} {
		tr := h.taskRun(d.key())
		statuses := append([]v1.TaskRunStatus{tr.Status}, tr.Status.RetriesStatus...)
		if d.name == retried.name && len(statuses) != 2 {
			t.Fatalf("%s: retriesStatus %+v, want the failed attempt", tr.Name, tr.Status.RetriesStatus)
		}
		for i, s := range statuses {
			if s.PodName != pod.Name {
				t.Errorf("%s status %d: podName %q, want %q", tr.Name, i, s.PodName, pod.Name)
			}
			var got []string
			for _, st := range s.Steps {
				got = append(got, st.Name+"="+st.Container)
				if !containers[st.Container] {
					t.Errorf("%s status %d: step %s names container %q, not in pod %s", tr.Name, i, st.Name, st.Container, pod.Name)
				}
			}
			var want []string
			for j := range d.steps {
				want = append(want, tr.Spec.TaskSpec.Steps[j].Name+"="+d.container(j))
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s status %d steps (-want +got):\n%s", tr.Name, i, d)
			}
		}
	}
	if c := h.taskRun(retried.key()).Status.RetriesStatus[0].GetCondition(apis.ConditionSucceeded); cond(c) != "False/Failed" {
		t.Errorf("the failed attempt: %v", c)
	}
}
