package reconciler

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// The kubelet rotated the reporter's log away and the controller restarted: the log it
// reads now lacks a's lines (until the reporter's next snapshot). a's final state,
// written to its TaskRun when it was first read, stands: a's step containers, long
// exited, are not taken for steps that exited without reporting, and a's results still
// make the pipeline's, even once the pod has ended.
func TestRotatedReportAfterRestart(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.prep.results = resultA
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second, result("out", "v")), runningState(taskB, time.Second))
	h.reconcile()

	h.reports.states["run-pod"] = map[string]plan.TaskState{"b": runningState(taskB, time.Second)}
	h.setPod(0, func(p *corev1.Pod) {
		for i, cs := range p.Status.ContainerStatuses {
			if cs.Name == taskA.container(0) || cs.Name == taskA.container(1) {
				p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: *at(time.Second)}}
			}
		}
	})
	h.clock.SetTime(t0.Add(5 * time.Minute))
	h.restart()
	h.writes()
	h.reconcile()
	want := view{Condition: unknownRunning, TaskRuns: map[string]string{"a": "True/Succeeded", "b": unknownRunning}, Pods: pods0}
	if diff := cmp.Diff(want, h.view()); diff != "" {
		t.Fatalf("after the restart (-want +got)\n%s", diff)
	}
	if w := h.writes(); w.UpdateStatus != 0 {
		t.Errorf("writes: %+v", w)
	}

	h.report(0, true, finalState(taskB, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second))
	h.setPod(0, func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
	h.reconcile()
	want = view{Condition: "True/Succeeded", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "True/Succeeded"}, Pods: pods0,
		Results: []v1beta1.CustomRunResult{{Name: "out", Value: "v"}}}
	if diff := cmp.Diff(want, h.view()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
