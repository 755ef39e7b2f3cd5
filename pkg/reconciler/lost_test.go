package reconciler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// updatePod changes the attempt's pod in the API server as any writer could (metadata
// included, e.g. the deletion timestamp a graceful delete sets).
func (h *harness) updatePod(attempt int, f func(*corev1.Pod)) {
	h.t.Helper()
	p := h.pod(attempt)
	if p == nil {
		h.t.Fatalf("no pod for attempt %d", attempt)
	}
	f(p)
	must(h.t, h.kube.Tracker().Update(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, p, ns))
}

// onNode runs the pod's containers on node-1.
func onNode(p *corev1.Pod) {
	running(p)
	p.Spec.NodeName = "node-1"
}

// lostHarness is a run of a and b whose pod runs on node-1, a running, whose reporter's
// log then cannot be read.
func lostHarness(t *testing.T) *harness {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.reconcile()
	h.updatePod(0, onNode)
	h.report(0, false, runningState(taskA, time.Second))
	h.reconcile()
	h.reports.err = errors.New(`Get "https://node-1:10250/containerLogs/ns/run-pod/step-pip-reporter": dial tcp 10.0.0.7:10250: connect: no route to host`)
	return h
}

func (h *harness) lookAt(d time.Duration) {
	h.t.Helper()
	h.clock.SetTime(t0.Add(d))
	h.reconcile()
}

var unreachable = view{Condition: "False/" + observe.ReasonKubeletUnreachable,
	TaskRuns: map[string]string{"a": "False/" + observe.ReasonKubeletUnreachable, "b": "False/TaskRunCancelled"}, Pods: pods0}

// A pod whose log cannot be read ends the run LogReadTimeout after the first failed
// read, naming the node and the last error; until then the run waits, looked at again
// within unreadableRefresh.
func TestKubeletUnreachable(t *testing.T) {
	h := lostHarness(t)
	running := view{Condition: unknownRunning, TaskRuns: map[string]string{"a": unknownRunning, "b": pending}, Pods: pods0}
	for _, d := range []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 40 * time.Second, 50 * time.Second, 69 * time.Second} {
		h.lookAt(d)
		if diff := cmp.Diff(running, h.view()); diff != "" {
			t.Fatalf("at %s (-want +got):\n%s", d, diff)
		}
		if _, after := controllerRequeue(h); after <= 0 || after > unreadableRefresh {
			t.Fatalf("at %s: requeued after %s", d, after)
		}
	}
	h.lookAt(70 * time.Second)
	if diff := cmp.Diff(unreachable, h.view()); diff != "" {
		t.Fatalf("at 70s (-want +got):\n%s", diff)
	}
	c := h.cr().Status.GetCondition(apis.ConditionSucceeded)
	if want := `the kubelet on node "node-1" has not answered for 1m0s: Get "https://node-1:10250/`; !strings.HasPrefix(c.Message, want) ||
		!strings.Contains(c.Message, "no route to host; running: a") {
		t.Errorf("message %q, want it to start %q and name the error and the running task", c.Message, want)
	}
	h.reconcile()
	unreachable := unreachable
	unreachable.Pods = nil
	if diff := cmp.Diff(unreachable, h.view()); diff != "" {
		t.Errorf("the pod is deleted (-want +got):\n%s", diff)
	}
}

// The clock is kept in the CustomRun's status: a controller restarted meanwhile ends the
// run on time. One that was away longer than unreadableGap starts it again, since
// nobody saw the kubelet fail meanwhile.
func TestKubeletUnreachableClock(t *testing.T) {
	t.Run("survives a restart", func(t *testing.T) {
		h := lostHarness(t)
		h.lookAt(10 * time.Second)
		h.lookAt(20 * time.Second)
		h.restart()
		h.lookAt(30 * time.Second)
		h.lookAt(40 * time.Second)
		h.lookAt(50 * time.Second)
		h.restart()
		h.lookAt(60 * time.Second)
		h.lookAt(70 * time.Second)
		if diff := cmp.Diff(unreachable, h.view()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("a gap starts it again", func(t *testing.T) {
		h := lostHarness(t)
		h.lookAt(10 * time.Second)
		h.lookAt(10*time.Second + unreadableGap + time.Second)
		for d := 50 * time.Second; d <= 100*time.Second; d += 10 * time.Second {
			h.lookAt(d)
			if v := h.view(); v.Condition != unknownRunning {
				t.Fatalf("at %s, %s after the first failure, %s after the gap: %+v", d, d-10*time.Second, d-41*time.Second, v)
			}
		}
		h.lookAt(101 * time.Second)
		if diff := cmp.Diff(unreachable, h.view()); diff != "" {
			t.Errorf("60 s after the gap (-want +got):\n%s", diff)
		}
	})
	t.Run("a read that succeeds starts it again", func(t *testing.T) {
		h := lostHarness(t)
		h.lookAt(10 * time.Second)
		h.lookAt(50 * time.Second)
		err := h.reports.err
		h.reports.err = nil
		h.lookAt(55 * time.Second)
		if s := observe.DecodeSummary(h.cr().Status.ExtraFields); s.LogUnreadableSince != nil || s.LogUnreadableSeen != nil {
			t.Errorf("after a read: %+v", s)
		}
		h.reports.err = err
		for d := 60 * time.Second; d < 120*time.Second; d += 10 * time.Second {
			h.lookAt(d)
			if v := h.view(); v.Condition != unknownRunning {
				t.Fatalf("at %s: %+v", d, v)
			}
		}
		h.lookAt(120 * time.Second)
		if diff := cmp.Diff(unreachable, h.view()); diff != "" {
			t.Errorf("60 s after the new first failure (-want +got):\n%s", diff)
		}
	})
}

// A pod that is lost ends the run at once, its log readable or not, naming the cause.
func TestPodLost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*corev1.Pod)
		want   view
		words  string
	}{{
		name: "being deleted by the taint manager (its node is gone)",
		change: func(p *corev1.Pod) {
			p.DeletionTimestamp = at(time.Minute)
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
				Reason: "DeletionByTaintManager", Message: "Taint manager: deleting due to NoExecute taint"})
		},
		want: view{Condition: "False/PodDeleted", TaskRuns: map[string]string{"a": "False/PodDeleted", "b": "False/TaskRunCancelled"}, Pods: pods0},
		words: `pod "run-pod" on node "node-1" is being deleted (DeletionByTaintManager: Taint manager: deleting due to NoExecute taint) ` +
			`before every task finished; running: a`,
	}, {
		name:   "being deleted",
		change: func(p *corev1.Pod) { p.DeletionTimestamp = at(time.Minute) },
		want:   view{Condition: "False/PodDeleted", TaskRuns: map[string]string{"a": "False/PodDeleted", "b": "False/TaskRunCancelled"}, Pods: pods0},
		words:  `pod "run-pod" was deleted before every task finished; running: a`,
	}, {
		name: "its node is unreachable",
		change: func(p *corev1.Pod) {
			p.Status.Reason, p.Status.Message = "NodeLost", "Node node-1 which was running pod run-pod is unresponsive"
		},
		want:  view{Condition: "False/NodeLost", TaskRuns: map[string]string{"a": "False/NodeLost", "b": "False/TaskRunCancelled"}, Pods: pods0},
		words: `pod "run-pod" on node "node-1": its node is unreachable (Node node-1 which was running pod run-pod is unresponsive)`,
	}, {
		name: "about to be terminated by the kubelet",
		change: func(p *corev1.Pod) {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
				Reason: corev1.PodReasonTerminationByKubelet, Message: "Pod was terminated in response to imminent node shutdown."})
		},
		want:  view{Condition: "False/PodDisrupted", TaskRuns: map[string]string{"a": "False/PodDisrupted", "b": "False/TaskRunCancelled"}, Pods: pods0},
		words: `pod "run-pod" on node "node-1" is being terminated (TerminationByKubelet: Pod was terminated in response to imminent node shutdown.)`,
	}} {
		for _, readable := range []bool{false, true} {
			name := tc.name + ", log unreadable"
			if readable {
				name = tc.name + ", log readable"
			}
			t.Run(name, func(t *testing.T) {
				h := lostHarness(t)
				if readable {
					h.reports.err = nil
				}
				h.updatePod(0, tc.change)
				h.lookAt(time.Minute)
				if diff := cmp.Diff(tc.want, h.view()); diff != "" {
					t.Fatalf("(-want +got):\n%s", diff)
				}
				if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); !strings.Contains(c.Message, tc.words) {
					t.Errorf("message %q, want %q", c.Message, tc.words)
				}
			})
		}
	}
}

// A pod being deleted after every task's final state was written ends the run as its
// tasks did, though its log can no longer be read.
func TestPodDeletedAfterTheTasksEnded(t *testing.T) {
	h := lostHarness(t)
	h.reports.err = nil
	h.report(0, false, finalState(taskA, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second), finalState(taskB, plan.PhaseSucceeded, "Succeeded", 2*time.Second, 3*time.Second))
	failOnce(&h.tekton.Fake, "update", "customruns", "status")
	h.lookAt(5 * time.Second)
	if v := h.view(); v.Condition != unknownRunning || v.TaskRuns["a"] != "True/Succeeded" || v.TaskRuns["b"] != "True/Succeeded" {
		t.Fatalf("setup: %+v", v)
	}
	h.reports.err = errors.New("pods \"run-pod\" not found")
	h.updatePod(0, func(p *corev1.Pod) { p.DeletionTimestamp = at(6 * time.Second) })
	h.lookAt(6 * time.Second)
	want := view{Condition: "True/Succeeded", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "True/Succeeded"}, Pods: pods0}
	if diff := cmp.Diff(want, h.view()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// deadlineReports records the deadline of the context a read is given.
type deadlineReports struct {
	deadline time.Time
	ok       bool
}

func (d *deadlineReports) Read(ctx context.Context, _ *corev1.Pod) (map[string]plan.TaskState, bool, error) {
	d.deadline, d.ok = ctx.Deadline()
	return nil, false, nil
}

// A read of the log is bounded: a kubelet that never answers does not hold the reconcile.
func TestLogReadIsBounded(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	d := &deadlineReports{}
	h.r.Reports = d
	h.reconcile()
	h.setPod(0, running)
	h.reconcile()
	if end := time.Now(); !d.ok || d.deadline.After(end.Add(logRequestTimeout)) {
		t.Errorf("read with deadline %v from now (set %v), want within %s", d.deadline.Sub(end), d.ok, logRequestTimeout)
	}
}
