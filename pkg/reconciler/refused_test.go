package reconciler

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ktesting "k8s.io/client-go/testing"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

func TestPermanentlyRefused(t *testing.T) {
	gr := schema.GroupResource{Group: "tekton.dev", Resource: "taskruns"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"etcd's request limit", etcdTooLarge(), true},
		{"the request body limit", bodyTooLarge(), true},
		{"the schema", schemaInvalid(), true},
		{"an admission webhook", apierrors.NewBadRequest("admission webhook denied the request: validation failed"), true},
		{"wrapped", errors.Join(errors.New("updating"), etcdTooLarge()), true},
		{"a conflict", apierrors.NewConflict(gr, "run-a", errors.New("changed")), false},
		{"a timeout", apierrors.NewTimeoutError("etcdserver: request timed out", 1), false},
		{"an unreachable webhook", apierrors.NewInternalError(errors.New(`failed calling webhook "validation.webhook.pipeline.tekton.dev": connection refused`)), false},
		{"etcd leader change", apierrors.NewInternalError(errors.New("etcdserver: leader changed")), false},
		{"not an API error", errors.New("etcdserver: request is too large"), false},
		{"none", nil, false},
	} {
		if got := permanentlyRefused(tc.err); got != tc.want {
			t.Errorf("%s: permanentlyRefused(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// hugeResult is a result whose TaskRun status the API server refuses (see refuseOversized).
func hugeResult() plan.TaskState {
	return finalState(taskA, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second, result("out", strings.Repeat("x", 100<<10)))
}

// A TaskRun status the API server refuses for good (here: a result too large for it to
// store) ends the run: the TaskRun gets a failure it can store, the other tasks end, the
// CustomRun fails naming the task and the cause, and nothing is retried without end.
func TestRefusedStatusEndsTheRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refusal func() error
		words   string
	}{
		{"etcd's request limit", etcdTooLarge, "etcdserver: request is too large"},
		{"the request body limit", bodyTooLarge, "Request entity too large"},
		{"the schema", schemaInvalid, "Too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newCustomRun("run"), taskA, taskB)
			refuseOversized(&h.tekton.Fake, 64<<10, tc.refusal)
			h.reconcile()
			h.setPod(0, running)
			h.report(0, false, hugeResult(), runningState(taskB, 2*time.Second))
			h.reconcile()
			want := view{Condition: "False/" + observe.ReasonTaskRunStatusRefused,
				TaskRuns: map[string]string{"a": "False/" + observe.ReasonTaskRunStatusRefused, "b": "False/TaskRunCancelled"}, Pods: pods0}
			if d := cmp.Diff(want, h.view()); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
			c := h.cr().Status.GetCondition(apis.ConditionSucceeded)
			if !strings.HasPrefix(c.Message, `task "a" (TaskRun "run-a"): the API server refused the TaskRun's status: `) || !strings.Contains(c.Message, tc.words) {
				t.Errorf("CustomRun message %q, want the task and %q", c.Message, tc.words)
			}
			a := h.taskRun("a")
			if a.Status.Results != nil || a.Status.TaskSpec != nil || a.Status.PodName != "run-pod" || a.Status.CompletionTime == nil {
				t.Errorf("a's stand-in: results %v, taskSpec %v, podName %q, completion %v", a.Status.Results, a.Status.TaskSpec, a.Status.PodName, a.Status.CompletionTime)
			}
			if ac := a.Status.GetCondition(apis.ConditionSucceeded); !strings.Contains(ac.Message, tc.words) {
				t.Errorf("a's message %q", ac.Message)
			}
			if ts, _ := observe.DecodeSummary(h.cr().Status.ExtraFields).Task("run-a"); ts.State != plan.PhaseFailed || ts.Reason != observe.ReasonTaskRunStatusRefused {
				t.Errorf("summary of a: %+v", ts)
			}
			// The pod is deleted (the other tasks may still run in it), then nothing more.
			h.reconcile()
			want.Pods = nil
			if d := cmp.Diff(want, h.view()); d != "" {
				t.Errorf("after the pod's deletion (-want +got):\n%s", d)
			}
			h.writes()
			h.reconcile()
			if w := h.writes(); w != (writeCount{}) || h.lastErr != nil {
				t.Errorf("once over: writes %+v, err %v", w, h.lastErr)
			}
		})
	}
}

// A controller that stopped after the stand-in was stored, before the CustomRun's status
// was, ends the run the same way when it looks again, without the refused write.
func TestRefusedStatusAfterRestart(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	refuseOversized(&h.tekton.Fake, 64<<10, etcdTooLarge)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, hugeResult(), runningState(taskB, 2*time.Second))
	failOnce(&h.tekton.Fake, "update", "customruns", "status")
	h.reconcile()
	if v := h.view(); v.Condition != unknownRunning || v.TaskRuns["a"] != "False/"+observe.ReasonTaskRunStatusRefused {
		t.Fatalf("setup: %+v", v)
	}
	h.restart()
	h.writes()
	h.reconcile()
	want := view{Condition: "False/" + observe.ReasonTaskRunStatusRefused,
		TaskRuns: map[string]string{"a": "False/" + observe.ReasonTaskRunStatusRefused, "b": "False/TaskRunCancelled"}, Pods: pods0}
	if d := cmp.Diff(want, h.view()); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); !strings.Contains(c.Message, `task "a"`) || !strings.Contains(c.Message, "request is too large") {
		t.Errorf("message %q", c.Message)
	}
	if w := h.writes(); w.UpdateStatus != 1 {
		t.Errorf("writes %+v: want the CustomRun's status only (b was cancelled before the restart)", w)
	}
}

// refuseAll refuses every TaskRun status write, stand-ins included.
func refuseAll(h *harness) {
	h.tekton.PrependReactor("update", "taskruns", func(a ktesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		return true, nil, apierrors.NewBadRequest("admission webhook \"validation.webhook.pipeline.tekton.dev\" denied the request")
	})
}

// Cancel and timeout end the CustomRun even when the API server refuses every TaskRun
// status: its message says which.
func TestEndingWhenEveryStatusIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cr     func(*v1beta1.CustomRun)
		do     func(h *harness)
		reason string
	}{{
		name: "cancel",
		do: func(h *harness) {
			h.updateCR(func(cr *v1beta1.CustomRun) { cr.Spec.Status = v1beta1.CustomRunSpecStatusCancelled })
		},
		reason: "CustomRunCancelled",
	}, {
		name:   "timeout",
		cr:     func(cr *v1beta1.CustomRun) { cr.Spec.Timeout = &metav1.Duration{Duration: time.Minute} },
		do:     func(h *harness) { h.clock.SetTime(t0.Add(2 * time.Minute)) },
		reason: "CustomRunTimedOut",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cr := newCustomRun("run")
			if tc.cr != nil {
				tc.cr(cr)
			}
			h := newHarness(t, cr, taskA, taskB)
			h.reconcile()
			h.setPod(0, running)
			h.report(0, false, runningState(taskA, time.Second))
			h.reconcile()
			refuseAll(h)
			tc.do(h)
			h.reconcile()
			want := view{Condition: "False/" + tc.reason, TaskRuns: map[string]string{"a": unknownRunning, "b": pending}, Pods: pods0}
			if d := cmp.Diff(want, h.view()); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
			if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); !strings.Contains(c.Message, `TaskRun "run-a": the API server refused the TaskRun's status: `) ||
				!strings.Contains(c.Message, "and 1 more TaskRuns") {
				t.Errorf("message %q", c.Message)
			}
			h.reconcile()
			want.Pods = nil
			if d := cmp.Diff(want, h.view()); d != "" || h.lastErr != nil {
				t.Errorf("the next reconcile (err %v) (-want +got):\n%s", h.lastErr, d)
			}
		})
	}
}

// A TaskRun status write that fails for a while (not a refusal) is retried: it does not
// end a running attempt, and does not hold up a cancel, whose TaskRuns are written once
// the API server takes them.
func TestTransientStatusErrors(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	down := true
	h.tekton.PrependReactor("update", "taskruns", func(a ktesting.Action) (bool, runtime.Object, error) {
		if !down || a.GetSubresource() != "status" {
			return false, nil, nil
		}
		return true, nil, apierrors.NewInternalError(errors.New("etcdserver: leader changed"))
	})
	h.reconcile()
	want := view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0}
	if d := cmp.Diff(want, h.view()); d != "" || h.lastErr == nil || h.requeued() {
		t.Fatalf("running, err %v (-want +got):\n%s", h.lastErr, d)
	}
	h.updateCR(func(cr *v1beta1.CustomRun) { cr.Spec.Status = v1beta1.CustomRunSpecStatusCancelled })
	h.reconcile()
	want.Condition = "False/CustomRunCancelled"
	if d := cmp.Diff(want, h.view()); d != "" || h.lastErr == nil {
		t.Fatalf("cancelled, err %v (-want +got):\n%s", h.lastErr, d)
	}
	down = false
	h.reconcile()
	want = view{Condition: "False/CustomRunCancelled", TaskRuns: map[string]string{"a": "False/TaskRunCancelled", "b": "False/TaskRunCancelled"}}
	if d := cmp.Diff(want, h.view()); d != "" || h.lastErr != nil {
		t.Errorf("once the API server takes them, err %v (-want +got):\n%s", h.lastErr, d)
	}
}
