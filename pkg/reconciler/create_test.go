package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	tektonv1 "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/typed/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ktesting "k8s.io/client-go/testing"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// hookedTekton calls hook before each TaskRun create and status update, outside the
// fake clientset's lock (its reactors run under it, so they cannot show concurrency).
// A create gets the UID an API server would give.
type hookedTekton struct {
	versioned.Interface
	hook func(verb string, tr *v1.TaskRun)
}

func (h hookedTekton) TektonV1() tektonv1.TektonV1Interface {
	return hookedV1{TektonV1Interface: h.Interface.TektonV1(), hook: h.hook}
}

type hookedV1 struct {
	tektonv1.TektonV1Interface
	hook func(string, *v1.TaskRun)
}

func (h hookedV1) TaskRuns(ns string) tektonv1.TaskRunInterface {
	return hookedTaskRuns{TaskRunInterface: h.TektonV1Interface.TaskRuns(ns), hook: h.hook}
}

type hookedTaskRuns struct {
	tektonv1.TaskRunInterface
	hook func(string, *v1.TaskRun)
}

func (h hookedTaskRuns) Create(ctx context.Context, tr *v1.TaskRun, opts metav1.CreateOptions) (*v1.TaskRun, error) {
	h.hook("create", tr)
	tr = tr.DeepCopy()
	tr.UID = types.UID("uid-" + tr.Name)
	return h.TaskRunInterface.Create(ctx, tr, opts)
}

func (h hookedTaskRuns) UpdateStatus(ctx context.Context, tr *v1.TaskRun, opts metav1.UpdateOptions) (*v1.TaskRun, error) {
	h.hook("update", tr)
	return h.TaskRunInterface.UpdateStatus(ctx, tr, opts)
}

// barrier holds each call until n are in flight (or a while passed) and records how
// many were at most.
type barrier struct {
	mu       sync.Mutex
	n        int
	inflight int
	max      int
	all      chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, all: make(chan struct{})} }

func (b *barrier) wait() {
	b.mu.Lock()
	b.inflight++
	b.max = max(b.max, b.inflight)
	if b.inflight == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
	case <-time.After(3 * time.Second):
	}
	b.mu.Lock()
	b.inflight--
	b.mu.Unlock()
}

func (b *barrier) most() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.max
}

func manyTasks(n int) []taskDef {
	var out []taskDef
	for i := range n {
		out = append(out, taskDef{name: fmt.Sprintf("t%d", i), steps: 1})
	}
	return out
}

// Nothing serial in N on the way to the pod: the TaskRuns are created all at once, and
// the pod is created while they are (none of them is done before it is).
func TestCreatesAreConcurrent(t *testing.T) {
	const n = 5
	h := newHarness(t, newCustomRun("run"), manyTasks(n)...)
	podCreated := make(chan struct{})
	h.kube.PrependReactor("create", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
		close(podCreated)
		return false, nil, nil
	})
	creates := newBarrier(n)
	var beforePod []string
	var mu sync.Mutex
	h.r.PipelineClient = hookedTekton{Interface: h.tekton, hook: func(verb string, tr *v1.TaskRun) {
		if verb != "create" {
			return
		}
		creates.wait()
		select {
		case <-podCreated:
		case <-time.After(3 * time.Second):
			mu.Lock()
			beforePod = append(beforePod, tr.Name)
			mu.Unlock()
		}
	}}
	h.reconcile()
	if pods, trs := count(h); pods != 1 || trs != n || (h.lastErr != nil && !h.requeued()) {
		t.Fatalf("%d pods, %d TaskRuns, err %v", pods, trs, h.lastErr)
	}
	if got := creates.most(); got != n {
		t.Errorf("at most %d TaskRun creates in flight, want all %d", got, n)
	}
	if len(beforePod) != 0 {
		t.Errorf("the pod waited for the creates of %v", beforePod)
	}
}

// The pod carries a TaskRun's UID only through $(context.taskRun.uid): the TaskRun of
// a task that uses it is created before the pod is assembled, with its UID.
func TestPodWaitsForTheUIDsItCarries(t *testing.T) {
	uses := taskDef{name: "uses", steps: 1, usesUID: true}
	h := newHarness(t, newCustomRun("run"), uses, taskDef{name: "plain", steps: 1})
	var order []string
	var mu sync.Mutex
	h.kube.PrependReactor("create", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		order = append(order, "pod")
		mu.Unlock()
		return false, nil, nil
	})
	h.r.PipelineClient = hookedTekton{Interface: h.tekton, hook: func(verb string, tr *v1.TaskRun) {
		mu.Lock()
		order = append(order, tr.Name)
		mu.Unlock()
	}}
	h.reconcile()
	if pods, trs := count(h); pods != 1 || trs != 2 {
		t.Fatalf("%d pods, %d TaskRuns", pods, trs)
	}
	if len(order) == 0 || order[0] != "run-uses" {
		t.Errorf("creates in order %v: run-uses must come before the pod", order)
	}
	if got := h.prep.uids["run-uses"]; got != "uid-run-uses" {
		t.Errorf("the pod was assembled with UID %q for run-uses", got)
	}
	for _, tc := range []struct {
		name string
		tr   *v1.TaskRun
		want bool
	}{
		{"no reference", &v1.TaskRun{Spec: v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{Script: "echo $(context.taskRun.name)"}}}}}, false},
		{"in a script", &v1.TaskRun{Spec: v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{Script: "echo $(context.taskRun.uid)"}}}}}, true},
		{"through a parameter", &v1.TaskRun{Spec: v1.TaskRunSpec{
			Params:   v1.Params{{Name: "p", Value: *v1.NewStructuredValues("$(context.taskRun.uid)")}},
			TaskSpec: &v1.TaskSpec{Params: v1.ParamSpecs{{Name: "p"}}, Steps: []v1.Step{{Args: []string{"$(params.p)"}}}},
		}}, true},
		{"split over two parameters", &v1.TaskRun{Spec: v1.TaskRunSpec{
			Params:   v1.Params{{Name: "a", Value: *v1.NewStructuredValues("$(context.task")}, {Name: "b", Value: *v1.NewStructuredValues("Run.uid)")}},
			TaskSpec: &v1.TaskSpec{Params: v1.ParamSpecs{{Name: "a"}, {Name: "b"}}, Steps: []v1.Step{{Env: []corev1.EnvVar{{Name: "U", Value: "$(params.a)$(params.b)"}}}}},
		}}, true},
		{"a StepAction", &v1.TaskRun{Spec: v1.TaskRunSpec{TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{Ref: &v1.Ref{Name: "action"}}}}}}, true},
	} {
		if got := usesTaskRunUID(tc.tr); got != tc.want {
			t.Errorf("%s: usesTaskRunUID = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The statuses of the child TaskRuns are written all at once, not one after the other.
func TestStatusWritesAreConcurrent(t *testing.T) {
	const n = 5
	tasks := manyTasks(n)
	h := newHarness(t, newCustomRun("run"), tasks...)
	h.reconcile()
	updates := newBarrier(n)
	h.r.PipelineClient = hookedTekton{Interface: h.tekton, hook: func(verb string, _ *v1.TaskRun) {
		if verb == "update" {
			updates.wait()
		}
	}}
	h.setPod(0, running)
	var states []plan.TaskState
	for _, d := range tasks {
		states = append(states, finalState(d, plan.PhaseSucceeded, "Succeeded", 0, time.Second))
	}
	h.report(0, true, states...)
	h.reconcile()
	if v := h.view(); v.Condition != "True/Succeeded" {
		t.Fatalf("%+v", v)
	}
	if got := updates.most(); got != n {
		t.Errorf("at most %d TaskRun status updates in flight, want all %d", got, n)
	}
}

// Reconciles follow each other faster than the informer delivers the controller's own
// writes: a reconcile that sees the informer's older copy of a TaskRun writes nothing
// it wrote already.
func TestNoRedundantWritesBeforeTheInformerCatchesUp(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	// Resource versions, as an API server keeps them (the fake keeps none).
	rv := 0
	h.tekton.PrependReactor("*", "taskruns", func(a ktesting.Action) (bool, runtime.Object, error) {
		if o, ok := a.(interface{ GetObject() runtime.Object }); ok {
			rv++
			o.GetObject().(metav1.Object).SetResourceVersion(fmt.Sprint(rv))
		}
		return false, nil, nil
	})
	h.reconcile()
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	staleTaskRuns := h.trIdx.List()
	h.writes()
	h.reconcile()
	if w := h.writes(); w.UpdateStatus != 2 { // a's status, the CustomRun's
		t.Fatalf("setup: %+v", w)
	}
	// The informer still holds the TaskRuns as they were before that reconcile.
	must(t, h.trIdx.Replace(staleTaskRuns, ""))
	h.lastErr = h.impl.Reconcile(h.ctx, ns+"/run")
	if w := h.writes(); w != (writeCount{}) {
		t.Errorf("writes with a stale informer: %+v", w)
	}
	// What changes next is written once, over the version written last.
	h.report(0, false, finalState(taskA, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second), runningState(taskB, 2*time.Second))
	must(t, h.trIdx.Replace(staleTaskRuns, ""))
	h.lastErr = h.impl.Reconcile(h.ctx, ns+"/run")
	if w := h.writes(); w.UpdateStatus != 3 || h.lastErr != nil && !h.requeued() {
		t.Errorf("writes: %+v, err %v; want a's and b's statuses and the CustomRun's", w, h.lastErr)
	}
	if v := h.view(); v.TaskRuns["a"] != "True/Succeeded" || v.TaskRuns["b"] != unknownRunning {
		t.Errorf("%+v", v)
	}
}

// A controller that stopped after the pod was created, before every TaskRun was (or
// whose create failed), creates the missing ones when it looks again.
func TestMissingTaskRunsOfARunningPod(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	failed := false
	h.tekton.PrependReactor("create", "taskruns", func(a ktesting.Action) (bool, runtime.Object, error) {
		if failed || a.(ktesting.CreateAction).GetObject().(metav1.Object).GetName() != "run-b" {
			return false, nil, nil
		}
		failed = true
		return true, nil, errors.New("controller stopped")
	})
	h.reconcile()
	if pods, trs := count(h); pods != 1 || trs != 1 || h.lastErr == nil {
		t.Fatalf("setup: %d pods, %d TaskRuns, err %v", pods, trs, h.lastErr)
	}
	h.restart()
	h.reconcile()
	if pods, trs := count(h); pods != 1 || trs != 2 {
		t.Errorf("after restart: %d pods, %d TaskRuns", pods, trs)
	}
	want := view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0}
	if diff := cmp.Diff(want, h.view()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	// Nothing missing: nothing is prepared again.
	calls := h.prep.calls
	h.reconcile()
	if h.prep.calls != calls {
		t.Error("the run was prepared again with every TaskRun there")
	}
}

// A TaskRun the API server refuses fails the run; the pod created alongside is deleted.
func TestTaskRunRefusedDeletesThePod(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.tekton.PrependReactor("create", "taskruns", func(a ktesting.Action) (bool, runtime.Object, error) {
		if a.(ktesting.CreateAction).GetObject().(metav1.Object).GetName() != "run-b" {
			return false, nil, nil
		}
		return true, nil, apierrors.NewInvalid(schema.GroupKind{Group: "tekton.dev", Kind: "TaskRun"}, "run-b", field.ErrorList{field.TooLong(field.NewPath("spec"), "", 1)})
	})
	h.reconcile()
	c := h.cr().Status.GetCondition(apis.ConditionSucceeded)
	if cond(c) != "False/ValidationFailed" || !strings.Contains(c.Message, `creating TaskRun "run-b"`) {
		t.Errorf("%s %q", cond(c), c.Message)
	}
	if pods, _ := count(h); pods != 0 {
		t.Errorf("%d pods left running", pods)
	}
}

// Where admission may inject sidecars (Tekton's default), a pod that a dry run admits
// with exactly the containers sent, and no sidecars of its tasks, is created ready; when
// the dry run is refused, it is marked ready right after its create, if created as sent.
// One that came back with an injected container waits until every container runs, as
// Tekton's does.
func TestReadyAtCreate(t *testing.T) {
	for _, tc := range []struct {
		name          string
		inject        bool
		refuseDryRun  bool
		tasks         []taskDef
		want, created string
	}{
		{name: "nothing injected, no sidecars", tasks: []taskDef{{name: "a", steps: 1}, {name: "b", steps: 2}}, want: plan.ReadyAnnotationValue, created: plan.ReadyAnnotationValue},
		{name: "dry run refused", refuseDryRun: true, tasks: []taskDef{{name: "a", steps: 1}}, want: plan.ReadyAnnotationValue},
		{name: "a container injected", inject: true, tasks: []taskDef{{name: "a", steps: 1}}},
		{name: "a task's sidecar", tasks: []taskDef{withSC}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newCustomRun("run"), tc.tasks...)
			h.prep.injectedSidecars = true
			if tc.refuseDryRun {
				h.kube.PrependReactor("create", "pods", func(a ktesting.Action) (bool, runtime.Object, error) {
					if len(a.(ktesting.CreateActionImpl).CreateOptions.DryRun) > 0 {
						return true, nil, apierrors.NewBadRequest("admission webhook has side effects: dry run refused")
					}
					return false, nil, nil
				})
			}
			if tc.inject {
				h.kube.PrependReactor("create", "pods", func(a ktesting.Action) (bool, runtime.Object, error) {
					p := a.(ktesting.CreateAction).GetObject().(*corev1.Pod)
					p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "proxy"})
					return false, nil, nil
				})
			}
			h.reconcile()
			var created string
			for _, a := range h.kube.Actions() {
				if c, ok := a.(ktesting.CreateActionImpl); ok && a.GetResource().Resource == "pods" && len(c.CreateOptions.DryRun) == 0 {
					created = c.GetObject().(*corev1.Pod).Annotations[plan.ReadyAnnotation]
				}
			}
			if created != tc.created {
				t.Errorf("ready annotation in the create = %q, want %q", created, tc.created)
			}
			if got := h.pod(0).Annotations[plan.ReadyAnnotation]; got != tc.want {
				t.Fatalf("ready annotation after create = %q, want %q", got, tc.want)
			}
			h.setPod(0, running)
			h.reconcile()
			if got := h.pod(0).Annotations[plan.ReadyAnnotation]; got != plan.ReadyAnnotationValue {
				t.Errorf("ready annotation once every container runs = %q", got)
			}
		})
	}
}
