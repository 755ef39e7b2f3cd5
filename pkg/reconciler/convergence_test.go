package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	customrunreconciler "github.com/tektoncd/pipeline/pkg/client/injection/reconciler/pipeline/v1beta1/customrun"
	listersv1beta1 "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ktesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"knative.dev/pkg/apis"
	logtesting "knative.dev/pkg/logging/testing"
	pkgreconciler "knative.dev/pkg/reconciler"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

// failOnce makes the next matching write fail, as a controller that stops right before
// it would have happened.
func failOnce(f *ktesting.Fake, verb, resource, subresource string) {
	done := false
	f.PrependReactor(verb, resource, func(a ktesting.Action) (bool, runtime.Object, error) {
		if done || a.GetSubresource() != subresource {
			return false, nil, nil
		}
		done = true
		return true, nil, errors.New("controller stopped")
	})
}

func count(h *harness) (pods, taskRuns int) {
	p, _ := h.kube.CoreV1().Pods(ns).List(h.ctx, metav1.ListOptions{})
	t, _ := h.tekton.TektonV1().TaskRuns(ns).List(h.ctx, metav1.ListOptions{})
	return len(p.Items), len(t.Items)
}

// A controller restarted at any point of a run resumes it: nothing is created twice,
// nothing already written is written again, no status is lost.
func TestRestartInEachPhase(t *testing.T) {
	t.Run("after the TaskRuns, before the pod", func(t *testing.T) {
		h := newHarness(t, newCustomRun("run"), taskA, taskB)
		failOnce(&h.kube.Fake, "create", "pods", "")
		h.reconcile()
		if pods, trs := count(h); pods != 0 || trs != 2 || h.lastErr == nil {
			t.Fatalf("setup: %d pods, %d TaskRuns, err %v", pods, trs, h.lastErr)
		}
		h.restart()
		h.writes()
		h.reconcile()
		if pods, trs := count(h); pods != 1 || trs != 2 {
			t.Errorf("after restart: %d pods, %d TaskRuns", pods, trs)
		}
		if w := h.writes(); w.Create != 1 {
			t.Errorf("creates after restart: %d, want only the pod", w.Create)
		}
	})

	t.Run("after the TaskRuns, with a stale cache", func(t *testing.T) {
		h := newHarness(t, newCustomRun("run"), taskA, taskB)
		failOnce(&h.kube.Fake, "create", "pods", "")
		h.reconcile()
		h.restart()
		// The informer has not seen the TaskRuns yet: creating them again must find them.
		must(t, h.trIdx.Replace(nil, ""))
		h.lastErr = h.impl.Reconcile(h.ctx, ns+"/run")
		h.sync()
		if pods, trs := count(h); pods != 1 || trs != 2 || (h.lastErr != nil && !h.requeued()) {
			t.Errorf("%d pods, %d TaskRuns, err %v", pods, trs, h.lastErr)
		}
	})

	t.Run("after the pod, before the CustomRun's status", func(t *testing.T) {
		h := newHarness(t, newCustomRun("run"), taskA, taskB)
		failOnce(&h.tekton.Fake, "update", "customruns", "status")
		h.reconcile()
		if cr := h.cr(); cr.Status.StartTime != nil {
			t.Fatal("setup: the status was written")
		}
		h.restart()
		h.reconcile()
		if pods, trs := count(h); pods != 1 || trs != 2 || h.prep.calls != 1 {
			t.Errorf("%d pods, %d TaskRuns, stages ran %d times", pods, trs, h.prep.calls)
		}
		if s := observe.DecodeSummary(h.cr().Status.ExtraFields); s.PodName != "run-pod" {
			t.Errorf("summary = %+v", s)
		}
	})

	t.Run("running", func(t *testing.T) {
		h := newHarness(t, newCustomRun("run"), taskA, taskB)
		h.reconcile()
		h.setPod(0, running)
		h.report(0, false, runningState(taskA, time.Second))
		h.reconcile()
		before := h.view()
		h.restart()
		h.writes()
		h.reconcile()
		if diff := cmp.Diff(before, h.view()); diff != "" {
			t.Errorf("(-before +after)\n%s", diff)
		}
		if w := h.writes(); w != (writeCount{}) {
			t.Errorf("writes after a restart with nothing new: %+v", w)
		}
	})

	t.Run("after the TaskRuns' final statuses, before the CustomRun's", func(t *testing.T) {
		h := newHarness(t, newCustomRun("run"), taskA, taskB)
		h.reconcile()
		h.setPod(0, running)
		h.report(0, true,
			finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second),
			finalState(taskB, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second))
		failOnce(&h.tekton.Fake, "update", "customruns", "status")
		h.reconcile()
		if v := h.view(); v.Condition != unknownRunning || v.TaskRuns["a"] != "True/Succeeded" {
			t.Fatalf("setup: %+v", v)
		}
		h.restart()
		h.writes()
		h.reconcile()
		if v := h.view(); v.Condition != "True/Succeeded" {
			t.Errorf("after restart: %+v", v)
		}
		if w := h.writes(); w.UpdateStatus != 1 || w.Create != 0 {
			t.Errorf("writes: %+v, want only the CustomRun's status", w)
		}
	})

	t.Run("done", func(t *testing.T) {
		h := newHarness(t, newCustomRun("run"), taskA)
		h.reconcile()
		h.setPod(0, running)
		h.report(0, true, finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second))
		h.reconcile()
		h.restart()
		h.writes()
		h.reconcile()
		if w := h.writes(); w != (writeCount{}) {
			t.Errorf("writes: %+v", w)
		}
	})
}

// docs/design.md hazard 1: a stale "pending" status written by Tekton's TaskRun reconciler
// (from an old cache copy, after ours) must not stay.
func TestStalePendingWrite(t *testing.T) {
	stale := func(h *harness, key string, from *v1.TaskRun) {
		old := from.DeepCopy()
		cur := h.taskRun(key)
		old.ResourceVersion = cur.ResourceVersion
		old.Status.MarkResourceOngoing(v1.TaskRunReasonPending, fmt.Sprintf("TaskRun %q is pending", old.Name))
		_, err := h.tekton.TektonV1().TaskRuns(ns).UpdateStatus(h.ctx, old, metav1.UpdateOptions{})
		must(h.t, err)
	}
	for _, tc := range []struct {
		name      string
		deletePod bool
	}{{name: "pod still there"}, {name: "pod gone: restored from the CustomRun's summary", deletePod: true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newCustomRun("run"), taskA, taskB)
			h.reconcile()
			h.setPod(0, running)
			h.report(0, false, runningState(taskA, time.Second))
			h.reconcile()
			runningA := h.taskRun("a")
			h.report(0, true,
				finalState(taskA, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second, result("out", "v")),
				finalState(taskB, plan.PhaseSucceeded, "Succeeded", 2*time.Second, 3*time.Second))
			h.reconcile()
			finalA := h.taskRun("a")
			if tc.deletePod {
				must(t, h.kube.CoreV1().Pods(ns).Delete(h.ctx, "run-pod", metav1.DeleteOptions{}))
			}

			stale(h, "a", runningA)
			if c := h.taskRun("a").Status.GetCondition(apis.ConditionSucceeded); c.Reason != "TaskRunPending" {
				t.Fatalf("setup: %v", c)
			}
			h.reconcile()
			got := h.taskRun("a")
			if c := got.Status.GetCondition(apis.ConditionSucceeded); cond(c) != "True/Succeeded" {
				t.Fatalf("after the stale write: %s", cond(c))
			}
			if !tc.deletePod {
				if diff := cmp.Diff(finalA.Status.TaskRunStatusFields, got.Status.TaskRunStatusFields); diff != "" {
					t.Errorf("restored status differs (-final +restored)\n%s", diff)
				}
			} else if got.Status.CompletionTime == nil || got.Status.PodName != "run-pod" {
				t.Errorf("restored from the summary: %+v", got.Status.TaskRunStatusFields)
			}
			h.writes()
			h.reconcile()
			if w := h.writes(); w != (writeCount{}) {
				t.Errorf("converged, yet writes: %+v", w)
			}
		})
	}
}

// A conflict on a TaskRun status write (someone wrote meanwhile) is retried against
// their version: fields we do not own survive, ours win.
func TestTaskRunStatusConflict(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	conflicted := false
	h.tekton.PrependReactor("update", "taskruns", func(a ktesting.Action) (bool, runtime.Object, error) {
		if conflicted || a.GetSubresource() != "status" {
			return false, nil, nil
		}
		conflicted = true
		// Meanwhile Tekton (tracing on) stored a span context. (The tracker, not the
		// client: the fake client is locked while its reactors run.)
		gvr := schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "taskruns"}
		obj, err := h.tekton.Tracker().Get(gvr, ns, trName("run", "a"))
		if err != nil {
			t.Fatal(err)
		}
		tr := obj.(*v1.TaskRun).DeepCopy()
		tr.Status.SpanContext = map[string]string{"traceparent": "00-abc-def-01"}
		if err := h.tekton.Tracker().Update(gvr, tr, ns); err != nil {
			t.Fatal(err)
		}
		return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "tekton.dev", Resource: "taskruns"}, tr.Name, errors.New("changed"))
	})
	h.reconcile()
	tr := h.taskRun("a")
	if !conflicted || tr.Status.SpanContext["traceparent"] == "" || cond(tr.Status.GetCondition(apis.ConditionSucceeded)) != unknownRunning {
		t.Errorf("conflict %v, status %+v", conflicted, tr.Status)
	}
}

// Without spec.managedBy honoured (an older Tekton), Tekton re-marks a running TaskRun
// pending on every reconcile: the running condition we write is then exactly Tekton's,
// so neither controller has anything to change, and the pod is named only once safe.
func TestTaskRunsTektonStillReconciles(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	tekton := "tekton.dev/pipeline"
	h.r.Preparer = preparerFunc(func(ctx context.Context, cr *v1beta1.CustomRun) (*prepare.Prepared, error) {
		p, err := h.prep.Prepare(ctx, cr)
		for _, tr := range p.TaskRuns {
			tr.Spec.ManagedBy = &tekton
		}
		return p, err
	})
	h.reconcile()
	h.setPod(0, func(p *corev1.Pod) {
		running(p)
		// An injected container, which Tekton's stopSidecars would stop.
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy"})
	})
	must(t, h.kube.Tracker().Update(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, withContainer(h.pod(0), "istio-proxy"), ns))
	h.report(0, false, finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second), runningState(taskB, time.Second))
	h.reconcile()
	b := h.taskRun("b")
	c := b.Status.GetCondition(apis.ConditionSucceeded)
	if c.Reason != "TaskRunPending" || c.Message != `TaskRun "run-b" is pending` || b.Status.PodName != "" {
		t.Errorf("running TaskRun seen by Tekton: %s %q podName %q", c.Reason, c.Message, b.Status.PodName)
	}
	if a := h.taskRun("a"); a.Status.PodName != "" {
		t.Errorf("a final TaskRun names a pod with an injected container while other tasks run: %q", a.Status.PodName)
	}
	// What Tekton's reconcile of run-b does: nothing to change.
	before := b.Status.DeepCopy()
	b.Status.MarkResourceOngoing(v1.TaskRunReasonPending, fmt.Sprintf("TaskRun %q is pending", b.Name))
	if !equalStatus(*before, b.Status) {
		t.Error("Tekton would rewrite the running TaskRun's condition")
	}
	h.report(0, true, finalState(taskB, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second))
	h.reconcile()
	if a, b := h.taskRun("a"), h.taskRun("b"); a.Status.PodName != "run-pod" || b.Status.PodName != "run-pod" {
		t.Errorf("once the attempt is over every TaskRun names the pod: %q %q", a.Status.PodName, b.Status.PodName)
	}
}

func withContainer(p *corev1.Pod, name string) *corev1.Pod {
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return p
		}
	}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name})
	return p
}

type preparerFunc func(ctx context.Context, cr *v1beta1.CustomRun) (*prepare.Prepared, error)

func (f preparerFunc) Prepare(ctx context.Context, cr *v1beta1.CustomRun) (*prepare.Prepared, error) {
	return f(ctx, cr)
}

// A finished CustomRun stays finished when its spec changes afterwards (knative resets
// the condition of a new generation to Unknown before ReconcileKind).
func TestDoneStaysDoneOnNewGeneration(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, true, finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second))
	h.reconcile()
	h.updateCR(func(cr *v1beta1.CustomRun) { cr.Spec.Status = v1beta1.CustomRunSpecStatusCancelled })
	h.reconcile()
	if v := h.view(); v.Condition != "True/Succeeded" || v.TaskRuns["a"] != "True/Succeeded" {
		t.Errorf("%+v", v)
	}
}

// The API writes of a whole run of N tasks (the issue asks for this list). Tasks run one
// after the other and the controller sees every state (the most writes there can be).
func TestWritesOfARun(t *testing.T) {
	for _, tekton := range []string{"v1.4.0", "v1.15.1"} {
		t.Run("Tekton "+tekton, func(t *testing.T) { testWritesOfARun(t, tekton) })
	}
}

func testWritesOfARun(t *testing.T, tekton string) {
	const n = 3
	var tasks []taskDef
	for i := range n {
		tasks = append(tasks, taskDef{name: fmt.Sprintf("t%d", i), steps: 2})
	}
	h := newHarness(t, newCustomRun("run"), tasks...)
	h.r.Tekton = &TektonVersion{}
	h.r.Tekton.observe(&corev1.ConfigMap{Data: map[string]string{"version": tekton}})
	var total writeCount
	add := func() {
		w := h.writes()
		total.Create += w.Create
		total.Update += w.Update
		total.UpdateStatus += w.UpdateStatus
		total.Patch += w.Patch
		total.Delete += w.Delete
	}
	h.reconcile()
	add()
	h.setPod(0, running)
	h.writes()
	var states []plan.TaskState
	for i, d := range tasks {
		states = append(states, runningState(d, time.Duration(i)*time.Second))
		h.report(0, false, states...)
		h.reconcile()
		add()
		states[i] = finalState(d, plan.PhaseSucceeded, "Succeeded", time.Duration(i)*time.Second, time.Duration(i+1)*time.Second)
	}
	h.report(0, true, states...)
	h.reconcile()
	add()
	if v := h.view(); v.Condition != "True/Succeeded" {
		t.Fatalf("%+v", v)
	}
	// Creates: N TaskRuns + 1 pod. TaskRun specs, where Tekton needs them pending (before
	// v1.5.0): spec.status Pending cleared once per task as it starts (releasePending).
	// TaskRun statuses: running + final per task. CustomRun status: started, one per
	// reconcile that saw tasks change (n), final.
	want := writeCount{Create: n + 1, Update: n, UpdateStatus: 2*n + (n + 2)}
	if h.r.Tekton.HonoursManagedBy() {
		want.Update = 0
	}
	if total != want {
		t.Errorf("writes = %+v, want %+v", total, want)
	}
	// Events are writes too (one Event object each; repeats are patched).
	ev := h.events()
	if len(ev) != n+1 { // Started, a Running per completed task but the last, Succeeded
		t.Errorf("events = %q", ev)
	}
	// and each TaskRun's: Started, Succeeded.
	if trEv := h.taskRunEvents(); len(trEv) != 2*n {
		t.Errorf("TaskRun events = %q, want %d", trEv, 2*n)
	}
	t.Logf("a run of %d tasks: %+v, %d events: %q", n, total, len(ev), ev)
}

// Tekton's ready annotation, when the build put it there empty, is set with Tekton's
// own UpdateReady (a JSON patch replacing it).
func TestMarkReadyReplacesAnnotation(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), withSC)
	h.reconcile()
	p := h.pod(0)
	p.Annotations[plan.ReadyAnnotation] = ""
	running(p)
	_, err := h.kube.CoreV1().Pods(ns).Update(h.ctx, p, metav1.UpdateOptions{})
	must(t, err)
	h.reconcile()
	if got := h.pod(0).Annotations[plan.ReadyAnnotation]; got != plan.ReadyAnnotationValue {
		t.Errorf("ready annotation = %q", got)
	}
}

// Reading the reporter's log of a running pod fails: nothing regresses, the run waits.
// The one write is the CustomRun's summary recording when reading began to fail (the
// clock of LogReadTimeout, lost_test.go); looking again soon after writes nothing.
func TestReportUnreadable(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	h.reconcile()
	before := h.view()
	h.reports.err = errors.New("the kubelet is unreachable")
	h.writes()
	h.reconcile()
	if diff := cmp.Diff(before, h.view()); diff != "" || !h.requeued() {
		t.Errorf("requeued %v (-before +after)\n%s", h.requeued(), diff)
	}
	if w := h.writes(); w != (writeCount{UpdateStatus: 1}) {
		t.Errorf("writes: %+v, want the CustomRun's summary only", w)
	}
	h.clock.SetTime(t0.Add(3 * time.Second))
	h.reconcile()
	if diff := cmp.Diff(before, h.view()); diff != "" || !h.requeued() {
		t.Errorf("looking again: requeued %v (-before +after)\n%s", h.requeued(), diff)
	}
	if w := h.writes(); w != (writeCount{}) {
		t.Errorf("looking again: writes: %+v", w)
	}
}

func TestOOMKilledStep(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.reconcile()
	h.setPod(0, func(p *corev1.Pod) {
		running(p)
		for i := range p.Status.ContainerStatuses {
			if p.Status.ContainerStatuses[i].Name == "step-a-s1" {
				p.Status.ContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", FinishedAt: *at(2 * time.Second)}}
			}
		}
	})
	h.report(0, false, runningState(taskA, time.Second))
	h.reconcile()
	want := view{Condition: "False/StepOOM", TaskRuns: map[string]string{"a": "False/StepOOM", "b": "False/TaskRunCancelled"}, Pods: pods0}
	if diff := cmp.Diff(want, h.view()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestEvicted(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	h.reconcile()
	h.setPod(0, func(p *corev1.Pod) {
		p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", "The node was low on resource: ephemeral-storage."
	})
	h.reconcile()
	want := view{Condition: "False/PodEvicted", TaskRuns: map[string]string{"a": "False/PodEvicted", "b": "False/TaskRunCancelled"}, Pods: pods0}
	if diff := cmp.Diff(want, h.view()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); !strings.Contains(c.Message, "ephemeral-storage") {
		t.Errorf("message = %q", c.Message)
	}
}

func TestMissingPipelineResult(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	h.prep.results = resultA
	h.reconcile()
	h.setPod(0, running)
	h.report(0, true, finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second))
	h.reconcile()
	if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); cond(c) != "False/CouldntGetPipelineResult" {
		t.Errorf("%s %q", cond(c), c.Message)
	}
}

func TestNotOurs(t *testing.T) {
	cr := newCustomRun("other")
	cr.Spec.CustomRef.Kind = "Wait"
	h := newHarness(t, cr, taskA)
	h.reconcile()
	if h.prep.calls != 0 || h.cr().Status.StartTime != nil {
		t.Error("a CustomRun of another kind was reconciled")
	}
	if isOurs(cr) {
		t.Error("isOurs")
	}
	_ = types.UID("")
}

func equalStatus(a, b v1.TaskRunStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// Assembling fails for good after the TaskRuns exist: they end too, naming no pod.
func TestAssembleFailsAfterTaskRuns(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.r.Preparer = preparerFunc(func(ctx context.Context, cr *v1beta1.CustomRun) (*prepare.Prepared, error) {
		p, err := h.prep.Prepare(ctx, cr)
		p.Assemble = func(context.Context, int, map[string]types.UID) (*assemble.Output, error) {
			return nil, &prepare.Failure{Reason: prepare.ReasonValidationFailed, Err: errors.New("spec.pipelineSpec: the one pod for 2 tasks would be 2000000 bytes")}
		}
		return p, err
	})
	h.reconcile()
	h.reconcile()
	want := view{Condition: "False/ValidationFailed", TaskRuns: map[string]string{"a": "False/TaskRunCancelled", "b": "False/TaskRunCancelled"}}
	if diff := cmp.Diff(want, h.view()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if tr := h.taskRun("a"); tr.Status.PodName != "" || tr.Status.CompletionTime == nil {
		t.Errorf("podName %q completion %v", tr.Status.PodName, tr.Status.CompletionTime)
	}
	if cr := h.cr(); cr.Status.CompletionTime == nil {
		t.Error("no completion time")
	}
}

// Cancellation is prompt even when the reporter's log cannot be read.
func TestCancelWithUnreadableLog(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	h.reconcile()
	h.reports.err = errors.New("the kubelet is unreachable")
	h.updateCR(func(cr *v1beta1.CustomRun) { cr.Spec.Status = v1beta1.CustomRunSpecStatusCancelled })
	h.reconcile()
	h.reconcile()
	want := view{Condition: "False/CustomRunCancelled", TaskRuns: map[string]string{"a": "False/TaskRunCancelled"}}
	if diff := cmp.Diff(want, h.view()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if tr := h.taskRun("a"); tr.Status.StartTime == nil || len(tr.Status.Steps) != 2 {
		t.Errorf("the running state was lost: %+v", tr.Status.TaskRunStatusFields)
	}
}

// A pipeline task skipped before anything runs (a matrix over an empty array) has no
// TaskRun; the CustomRun lists and counts it, as a PipelineRun's skippedTasks.
func TestSkippedBeforeRunning(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	h.r.Preparer = preparerFunc(func(ctx context.Context, cr *v1beta1.CustomRun) (*prepare.Prepared, error) {
		p, err := h.prep.Prepare(ctx, cr)
		p.Skipped = []v1.SkippedTask{{Name: "empty-matrix", Reason: v1.EmptyArrayInMatrixParams}}
		return p, err
	})
	h.reconcile()
	h.setPod(0, running)
	h.report(0, true, finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second))
	h.reconcile()
	cr := h.cr()
	c := cr.Status.GetCondition(apis.ConditionSucceeded)
	s := observe.DecodeSummary(cr.Status.ExtraFields)
	if cond(c) != "True/Succeeded" || !strings.HasPrefix(c.Message, "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 1") ||
		len(s.SkippedTasks) != 1 || s.SkippedTasks[0].Name != "empty-matrix" {
		t.Errorf("%s %q, summary %+v", cond(c), c.Message, s)
	}
}

// The API server refuses the pod for good (too large for etcd, docs/design.md hazard 7): the
// run fails at once, saying so, instead of retrying forever.
func TestPodRefused(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	h.kube.PrependReactor("create", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewRequestEntityTooLargeError("limit is 3145728")
	})
	h.reconcile()
	c := h.cr().Status.GetCondition(apis.ConditionSucceeded)
	if cond(c) != "False/ValidationFailed" || !strings.Contains(c.Message, `creating pod "run-pod"`) {
		t.Errorf("%s %q", cond(c), c.Message)
	}
}

// The informer moves on between the generated reconciler's read of the CustomRun and
// ours (our own final status write arrives in between): the reconcile must not write the
// final condition over the older status it was handed (seen on a cluster: a Succeeded
// CustomRun that lost its completion time, results and final summary).
func TestInformerMovesOnDuringReconcile(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.prep.results = resultA
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	h.reconcile()
	stale := h.cr()
	h.report(0, true,
		finalState(taskA, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second, result("out", "v")),
		finalState(taskB, plan.PhaseSucceeded, "Succeeded", 2*time.Second, 3*time.Second))
	h.reconcile()
	final := h.cr()
	if !final.IsSuccessful() || final.Status.CompletionTime == nil || len(final.Status.Results) == 0 {
		t.Fatalf("setup: %+v", final.Status)
	}

	// The generated reconciler reads the older copy; our lister has the final one.
	if stale.ResourceVersion == final.ResourceVersion {
		// The fake API server keeps no resource versions; a real one moved on.
		stale.ResourceVersion = "stale"
	}
	staleIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	must(t, staleIdx.Add(stale))
	impl := customrunreconciler.NewReconciler(h.ctx, logtesting.TestLogger(t), h.tekton,
		listersv1beta1.NewCustomRunLister(staleIdx), h.recorder, h.r)
	must(t, impl.(pkgreconciler.LeaderAware).Promote(pkgreconciler.UniversalBucket(), func(pkgreconciler.Bucket, types.NamespacedName) {}))
	h.clock.SetTime(t0.Add(time.Minute))
	_ = impl.Reconcile(h.ctx, ns+"/run")

	// The status may be written again (knative's PostProcessReconcile moves the condition's
	// transition time, compared with the older copy), but only as the same final status.
	got := h.cr()
	if diff := cmp.Diff(final.Status, got.Status, cmpopts.IgnoreFields(apis.Condition{}, "LastTransitionTime")); diff != "" {
		t.Errorf("the final status changed (-final +got)\n%s", diff)
	}
}

// A pod that Pod Security admission refuses ends the run as Tekton ends a TaskRun whose
// pod it refuses; a quota refusal is retried.
func TestPodAdmissionRefused(t *testing.T) {
	for _, tc := range []struct {
		name, message, want string
	}{
		{name: "PodSecurity", message: `pods "run-pod" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true`, want: "False/PodAdmissionFailed"},
		{name: "quota", message: `pods "run-pod" is forbidden: exceeded quota: q, requested: pods=1`, want: "Unknown/Started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newCustomRun("run"), taskA)
			h.kube.PrependReactor("create", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "run-pod", errors.New(tc.message))
			})
			h.reconcile()
			c := h.cr().Status.GetCondition(apis.ConditionSucceeded)
			if cond(c) != tc.want {
				t.Errorf("condition %s %q, want %s", cond(c), c.Message, tc.want)
			}
			if tc.want != "Unknown/Started" && !strings.Contains(c.Message, "violates PodSecurity") {
				t.Errorf("message %q does not say why", c.Message)
			}
		})
	}
}
