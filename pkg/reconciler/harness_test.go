package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	customrunreconciler "github.com/tektoncd/pipeline/pkg/client/injection/reconciler/pipeline/v1beta1/customrun"
	listersv1 "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	listersv1beta1 "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	ktesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/kmeta"
	logtesting "knative.dev/pkg/logging/testing"
	pkgreconciler "knative.dev/pkg/reconciler"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

const ns = "ns"

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time { t := metav1.NewTime(t0.Add(d)); return &t }

// taskDef describes one pipeline task of a test pipeline.
type taskDef struct {
	name     string
	finally  bool
	steps    int
	sidecars int
	results  []string
	// matrix instances share the name; key gets a suffix.
	matrixIndex int
	matrixed    bool
	// usesUID: a step prints $(context.taskRun.uid).
	usesUID bool
}

func (d taskDef) key() string {
	if d.matrixed {
		return fmt.Sprintf("%s-%d", d.name, d.matrixIndex)
	}
	return d.name
}

func (d taskDef) container(i int) string { return fmt.Sprintf("step-%s-s%d", d.key(), i) }
func (d taskDef) sidecar(i int) string   { return fmt.Sprintf("step-%s-sc%d", d.key(), i) }
func trName(crName, key string) string   { return kmeta.ChildName(crName, "-"+key) }
func newCustomRun(name string) *v1beta1.CustomRun {
	return &v1beta1.CustomRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1beta1", Kind: "CustomRun"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(name + "-uid")},
		Spec: v1beta1.CustomRunSpec{
			CustomRef: &v1beta1.TaskRef{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind, Name: "pipeline"},
		},
	}
}

// fakePreparer plays pkg/prepare's stages: what it makes carries the metadata compile and
// assemble give, since the reconciler writes none of its own.
type fakePreparer struct {
	tasks   []taskDef
	results []v1.PipelineResult
	err     error
	calls   int
	// uids are the TaskRun UIDs the last Assemble was given.
	uids map[string]types.UID
	// injectedSidecars plays Tekton's running-in-environment-with-injected-sidecars
	// (its default): the pod never starts ready.
	injectedSidecars bool
}

func (f *fakePreparer) Prepare(ctx context.Context, cr *v1beta1.CustomRun) (*prepare.Prepared, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	p := &prepare.Prepared{PipelineName: "pipeline", Results: f.results}
	var pl plan.Plan
	for _, d := range f.tasks {
		tr := &v1.TaskRun{
			TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"},
			ObjectMeta: metav1.ObjectMeta{
				Name: trName(cr.Name, d.key()), Namespace: ns,
				Labels: map[string]string{
					pipeline.CustomRunKey: cr.Name, pipeline.PipelineTaskLabelKey: d.name,
					pipeline.MemberOfLabelKey: map[bool]string{false: "tasks", true: "finally"}[d.finally],
					v1.ManagedByLabelKey:      v1alpha1.ManagedBy,
				},
				OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(cr)},
			},
			Spec: v1.TaskRunSpec{Status: compile.TaskRunSpecStatus(ctx), TaskSpec: &v1.TaskSpec{}, ManagedBy: ptr.To(v1alpha1.TaskRunManagedBy)},
		}
		pt := plan.Task{Key: d.key(), PipelineTask: d.name, TaskRun: tr.Name, Finally: d.finally}
		for i := range d.steps {
			tr.Spec.TaskSpec.Steps = append(tr.Spec.TaskSpec.Steps, v1.Step{Name: fmt.Sprintf("s%d", i), Image: "busybox"})
			pt.Steps = append(pt.Steps, d.container(i))
		}
		if d.usesUID {
			tr.Spec.TaskSpec.Steps[0].Script = "echo $(context.taskRun.uid)"
		}
		for i := range d.sidecars {
			tr.Spec.TaskSpec.Sidecars = append(tr.Spec.TaskSpec.Sidecars, v1.Sidecar{Name: fmt.Sprintf("sc%d", i), Image: "redis"})
			pt.Sidecars = append(pt.Sidecars, d.sidecar(i))
		}
		if d.matrixed {
			tr.Labels["tekton.dev/matrixIndex"] = fmt.Sprint(d.matrixIndex)
			if len(p.Matrixed) == 0 || p.Matrixed[len(p.Matrixed)-1] != d.name {
				p.Matrixed = append(p.Matrixed, d.name)
			}
		}
		p.TaskRuns = append(p.TaskRuns, tr)
		pl.Tasks = append(pl.Tasks, pt)
	}
	p.Assemble = func(_ context.Context, runAttempt int, uids map[string]types.UID) (*assemble.Output, error) {
		f.uids = uids
		encoded, _ := pl.Encode()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: plan.PodName(cr.Name, runAttempt), Namespace: ns,
				Labels:          map[string]string{pipeline.CustomRunKey: cr.Name, v1.ManagedByLabelKey: v1alpha1.ManagedBy},
				Annotations:     map[string]string{plan.AnnotationPlan: encoded},
				OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(cr)},
			},
		}
		sidecars := false
		for _, t := range pl.Tasks {
			for _, c := range append(append([]string{}, t.Steps...), t.Sidecars...) {
				pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: "busybox"})
			}
			sidecars = sidecars || len(t.Sidecars) > 0
		}
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: plan.ReporterContainer, Image: "pip"})
		if !sidecars && !f.injectedSidecars {
			pod.Annotations[plan.ReadyAnnotation] = plan.ReadyAnnotationValue
		}
		return &assemble.Output{Pod: pod, TaskRuns: p.TaskRuns, Plan: &pl}, nil
	}
	return p, nil
}

// fakeReports plays the reporter container's log.
type fakeReports struct {
	states map[string]map[string]plan.TaskState // pod → key → state
	done   map[string]bool
	err    error
}

func (f *fakeReports) Read(_ context.Context, pod *corev1.Pod) (map[string]plan.TaskState, bool, error) {
	if f.err != nil {
		return nil, false, f.err
	}
	// The real reader goes through JSON; so does this, to compare like with like.
	b, err := json.Marshal(f.states[pod.Name])
	if err != nil {
		return nil, false, err
	}
	var out map[string]plan.TaskState
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, false, err
	}
	return out, f.done[pod.Name], nil
}

type harness struct {
	t        *testing.T
	ctx      context.Context
	crName   string
	kube     *k8sfake.Clientset
	tekton   *tektonfake.Clientset
	podIdx   cache.Indexer
	trIdx    cache.Indexer
	crIdx    cache.Indexer
	recorder *record.FakeRecorder
	// runEvents and trEvents are the drained events not yet returned.
	runEvents, trEvents []string
	clock               *clocktesting.FakePassiveClock
	reports             *fakeReports
	prep                *fakePreparer
	r                   *Reconciler
	impl                controller.Reconciler
	lastErr             error
}

func newHarness(t *testing.T, cr *v1beta1.CustomRun, tasks ...taskDef) *harness {
	t.Helper()
	h := &harness{
		t: t, ctx: logtesting.TestContextWithLogger(t), crName: cr.Name,
		kube: k8sfake.NewSimpleClientset(), tekton: tektonfake.NewSimpleClientset(cr),
		clock:   clocktesting.NewFakePassiveClock(t0),
		reports: &fakeReports{states: map[string]map[string]plan.TaskState{}, done: map[string]bool{}},
		prep:    &fakePreparer{tasks: tasks},
	}
	h.tekton.PrependReactor("*", "taskruns", admitTaskRun(h.tekton))
	h.kube.PrependReactor("create", "pods", dryRun)
	h.restart()
	return h
}

// dryRun answers a dry-run create as the API server does: with the object as admitted
// (after the reactors in front of it, such as a test's injected sidecar), stored nowhere.
// The fake clientset's tracker would store it.
func dryRun(a ktesting.Action) (bool, runtime.Object, error) {
	if c, ok := a.(ktesting.CreateActionImpl); ok && slices.Contains(c.CreateOptions.DryRun, metav1.DryRunAll) {
		return true, c.GetObject(), nil
	}
	return false, nil, nil
}

// admitTaskRun plays Tekton's admission webhook, which validates every TaskRun create
// and update, the status subresource's included (v1 TaskRun.Validate, with the stored
// object as the update's baseline).
func admitTaskRun(tekton *tektonfake.Clientset) ktesting.ReactionFunc {
	return func(a ktesting.Action) (bool, runtime.Object, error) {
		ctx := context.Background()
		// By verb: Create- and UpdateAction have the same methods, so a type switch
		// cannot tell them apart.
		oa, ok := a.(interface{ GetObject() runtime.Object })
		if !ok {
			return false, nil, nil
		}
		tr, _ := oa.GetObject().(*v1.TaskRun)
		if tr != nil && a.GetVerb() == "update" {
			if old, err := tekton.Tracker().Get(a.GetResource(), a.GetNamespace(), tr.Name); err == nil {
				ctx = apis.WithinUpdate(ctx, old)
			}
		}
		if tr == nil {
			return false, nil, nil
		}
		if err := tr.Validate(ctx); err != nil {
			return true, nil, apierrors.NewBadRequest(fmt.Sprintf("admission webhook denied the request: validation failed: %v", err))
		}
		return false, nil, nil
	}
}

// refuseOversized plays the API server's size limits on TaskRun writes (creates,
// updates, the status subresource's included): an object whose JSON is over limit
// bytes is refused with refusal, e.g. etcdTooLarge.
func refuseOversized(f *ktesting.Fake, limit int, refusal func() error) {
	f.PrependReactor("*", "taskruns", func(a ktesting.Action) (bool, runtime.Object, error) {
		oa, ok := a.(interface{ GetObject() runtime.Object })
		if !ok || oa.GetObject() == nil {
			return false, nil, nil
		}
		b, err := json.Marshal(oa.GetObject())
		if err != nil {
			return true, nil, err
		}
		if len(b) <= limit {
			return false, nil, nil
		}
		return true, nil, refusal()
	})
}

// etcdTooLarge is the API server's answer when etcd refuses a write over its
// --max-request-bytes: a 500 with etcd's words (k8s.io/apiserver passes the etcd error
// on as an error that is not a status).
func etcdTooLarge() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Reason: metav1.StatusReasonUnknown,
		Message: "etcdserver: request is too large",
	}}
}

// bodyTooLarge is the API server's answer to a request body over its limit (3 MiB).
func bodyTooLarge() error { return apierrors.NewRequestEntityTooLargeError("limit is 3145728") }

// schemaInvalid is the API server's answer to an object its schema refuses.
func schemaInvalid() error {
	return apierrors.NewInvalid(schema.GroupKind{Group: "tekton.dev", Kind: "TaskRun"}, "run-a",
		field.ErrorList{field.TooLong(field.NewPath("status", "results").Index(0).Child("value"), "", 1<<20)})
}

// restart makes a new controller over the same API server: fresh caches, nothing in memory.
func (h *harness) restart() {
	newIdx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	h.podIdx, h.trIdx, h.crIdx = newIdx(), newIdx(), newIdx()
	h.recorder = record.NewFakeRecorder(100)
	h.recorder.IncludeObject = true
	h.r = &Reconciler{
		KubeClient: h.kube, PipelineClient: h.tekton,
		PodLister: corelisters.NewPodLister(h.podIdx), TaskRunLister: listersv1.NewTaskRunLister(h.trIdx),
		CustomRunLister: listersv1beta1.NewCustomRunLister(h.crIdx),
		Preparer:        h.prep, Reports: h.reports, Clock: h.clock,
		Bounds: observe.DefaultBounds, RequeueInterval: DefaultRequeueInterval,
	}
	h.impl = customrunreconciler.NewReconciler(h.ctx, logtesting.TestLogger(h.t), h.tekton,
		listersv1beta1.NewCustomRunLister(h.crIdx), h.recorder, h.r)
	if err := h.impl.(pkgreconciler.LeaderAware).Promote(pkgreconciler.UniversalBucket(), func(pkgreconciler.Bucket, types.NamespacedName) {}); err != nil {
		h.t.Fatal(err)
	}
	h.sync()
}

// sync plays the informers: caches get what the API server holds.
func (h *harness) sync() {
	h.t.Helper()
	pods, _ := h.kube.CoreV1().Pods(ns).List(h.ctx, metav1.ListOptions{})
	var objs []any
	for i := range pods.Items {
		objs = append(objs, &pods.Items[i])
	}
	must(h.t, h.podIdx.Replace(objs, ""))
	trs, _ := h.tekton.TektonV1().TaskRuns(ns).List(h.ctx, metav1.ListOptions{})
	objs = nil
	for i := range trs.Items {
		objs = append(objs, &trs.Items[i])
	}
	must(h.t, h.trIdx.Replace(objs, ""))
	crs, _ := h.tekton.TektonV1beta1().CustomRuns(ns).List(h.ctx, metav1.ListOptions{})
	objs = nil
	for i := range crs.Items {
		objs = append(objs, &crs.Items[i])
	}
	must(h.t, h.crIdx.Replace(objs, ""))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// reconcile runs the generated reconciler (status write, events) once, as the work
// queue would, and returns whether it asked for a requeue.
func (h *harness) reconcile() {
	h.t.Helper()
	h.sync()
	h.lastErr = h.impl.Reconcile(h.ctx, ns+"/"+h.crName)
	h.sync()
}

func (h *harness) cr() *v1beta1.CustomRun {
	h.t.Helper()
	cr, err := h.tekton.TektonV1beta1().CustomRuns(ns).Get(h.ctx, h.crName, metav1.GetOptions{})
	must(h.t, err)
	return cr
}

func (h *harness) updateCR(f func(*v1beta1.CustomRun)) {
	h.t.Helper()
	cr := h.cr()
	f(cr)
	cr.Generation++
	_, err := h.tekton.TektonV1beta1().CustomRuns(ns).Update(h.ctx, cr, metav1.UpdateOptions{})
	must(h.t, err)
}

func (h *harness) taskRun(key string) *v1.TaskRun {
	h.t.Helper()
	tr, err := h.tekton.TektonV1().TaskRuns(ns).Get(h.ctx, trName(h.crName, key), metav1.GetOptions{})
	must(h.t, err)
	return tr
}

func (h *harness) pod(attempt int) *corev1.Pod {
	p, err := h.kube.CoreV1().Pods(ns).Get(h.ctx, plan.PodName(h.crName, attempt), metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return p
}

// setPod changes the attempt's pod status as the kubelet would.
func (h *harness) setPod(attempt int, f func(*corev1.Pod)) {
	h.t.Helper()
	p := h.pod(attempt)
	if p == nil {
		h.t.Fatalf("no pod for attempt %d", attempt)
	}
	f(p)
	_, err := h.kube.CoreV1().Pods(ns).UpdateStatus(h.ctx, p, metav1.UpdateOptions{})
	must(h.t, err)
}

// running makes every container of the pod run (and be ready).
func running(p *corev1.Pod) {
	p.Status.Phase = corev1.PodRunning
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Ready: true, ImageID: "docker.io/library/" + c.Image + "@sha256:0",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: *at(time.Second)}},
		})
	}
}

func (h *harness) report(attempt int, done bool, states ...plan.TaskState) {
	name := plan.PodName(h.crName, attempt)
	if h.reports.states[name] == nil {
		h.reports.states[name] = map[string]plan.TaskState{}
	}
	for _, s := range states {
		h.reports.states[name][s.Key] = s
	}
	h.reports.done[name] = done
}

func exit(c int32) *int32 { return &c }

func runningState(d taskDef, start time.Duration) plan.TaskState {
	s := plan.TaskState{Key: d.key(), Phase: plan.PhaseRunning, StartTime: at(start)}
	for i := range d.steps {
		ss := plan.StepState{Name: fmt.Sprintf("s%d", i), Container: d.container(i)}
		if i == 0 {
			ss.StartTime = at(start)
		}
		s.Steps = append(s.Steps, ss)
	}
	return s
}

func finalState(d taskDef, phase plan.Phase, reason string, start, end time.Duration, results ...v1.TaskRunResult) plan.TaskState {
	s := plan.TaskState{Key: d.key(), Phase: phase, Reason: reason, StartTime: at(start), CompletionTime: at(end), Results: results}
	if phase == plan.PhaseSkipped {
		s.StartTime = nil
		return s
	}
	for i := range d.steps {
		code := int32(0)
		r := "Completed"
		if phase == plan.PhaseFailed && i == d.steps-1 {
			code, r = 1, "Error"
		}
		s.Steps = append(s.Steps, plan.StepState{Name: fmt.Sprintf("s%d", i), Container: d.container(i), ExitCode: exit(code), Reason: r, StartTime: at(start), CompletionTime: at(end)})
	}
	if phase == plan.PhaseFailed {
		s.Message = fmt.Sprintf("%q exited with code 1", d.container(d.steps-1))
	}
	return s
}

func result(name, value string) v1.TaskRunResult {
	return v1.TaskRunResult{Name: name, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(value)}
}

// view is what a test compares after each step.
type view struct {
	Condition string
	TaskRuns  map[string]string
	Pods      []string
	Results   []v1beta1.CustomRunResult
	Retries   int
}

func cond(c *apis.Condition) string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf("%s/%s", c.Status, c.Reason)
}

func (h *harness) view() view {
	h.t.Helper()
	cr := h.cr()
	v := view{Condition: cond(cr.Status.GetCondition(apis.ConditionSucceeded)), TaskRuns: map[string]string{},
		Results: cr.Status.Results, Retries: len(cr.Status.RetriesStatus)}
	trs, _ := h.tekton.TektonV1().TaskRuns(ns).List(h.ctx, metav1.ListOptions{})
	for _, tr := range trs.Items {
		v.TaskRuns[strings.TrimPrefix(tr.Name, h.crName+"-")] = cond(tr.Status.GetCondition(apis.ConditionSucceeded))
	}
	pods, _ := h.kube.CoreV1().Pods(ns).List(h.ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		v.Pods = append(v.Pods, p.Name)
	}
	sort.Strings(v.Pods)
	return v
}

// events drains the recorded events and returns the CustomRun's; taskRunEvents those of
// its child TaskRuns.
func (h *harness) events() []string {
	h.drainEvents()
	out := h.runEvents
	h.runEvents = nil
	return out
}

func (h *harness) taskRunEvents() []string {
	h.drainEvents()
	out := h.trEvents
	h.trEvents = nil
	return out
}

// drainEvents sorts the recorded events by the kind of object they are about (the fake
// recorder appends " involvedObject{kind=...,apiVersion=...}").
func (h *harness) drainEvents() {
	for {
		select {
		case e := <-h.recorder.Events:
			i := strings.LastIndex(e, " involvedObject{")
			text, object := e[:i], e[i:]
			if strings.Contains(object, "kind=TaskRun,") {
				h.trEvents = append(h.trEvents, text)
			} else {
				h.runEvents = append(h.runEvents, text)
			}
		default:
			return
		}
	}
}

// writes counts the write actions (create, update, patch, delete) since the last call.
type writeCount struct{ Create, Update, UpdateStatus, Patch, Delete int }

func countWrites(actions []ktesting.Action) writeCount {
	var c writeCount
	for _, a := range actions {
		switch a.GetVerb() {
		case "create":
			c.Create++
		case "update":
			if a.GetSubresource() == "status" {
				c.UpdateStatus++
			} else {
				c.Update++
			}
		case "patch":
			c.Patch++
		case "delete":
			c.Delete++
		}
	}
	return c
}

func (h *harness) writes() writeCount {
	c := countWrites(append(h.kube.Actions(), h.tekton.Actions()...))
	h.kube.ClearActions()
	h.tekton.ClearActions()
	return c
}

func (h *harness) requeued() bool {
	ok, _ := controller.IsRequeueKey(h.lastErr)
	return ok
}

var _ runtime.Object = (*v1.TaskRun)(nil)
