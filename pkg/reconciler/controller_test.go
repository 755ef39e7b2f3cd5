package reconciler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	fakepipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client/fake"
	tektonfiltered "github.com/tektoncd/pipeline/pkg/client/injection/informers/factory/filtered"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/informers/factory/filtered/fake"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun/filtered/fake"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1alpha1/verificationpolicy/fake"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1beta1/customrun/fake"
	fakeresolutionclient "github.com/tektoncd/pipeline/pkg/client/resolution/injection/client/fake"
	_ "github.com/tektoncd/pipeline/pkg/client/resolution/injection/informers/resolution/v1beta1/resolutionrequest/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakekubeclient "knative.dev/pkg/client/injection/kube/client/fake"
	_ "knative.dev/pkg/client/injection/kube/informers/core/v1/pod/filtered/fake"
	kubefiltered "knative.dev/pkg/client/injection/kube/informers/factory/filtered"
	_ "knative.dev/pkg/client/injection/kube/informers/factory/filtered/fake"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/kmeta"
	rtesting "knative.dev/pkg/reconciler/testing"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

func setupController(t *testing.T) (context.Context, *controller.Impl, func()) {
	t.Helper()
	ctx, cancel, informers := rtesting.SetupFakeContextWithCancel(t, func(ctx context.Context) context.Context {
		ctx = kubefiltered.WithSelectors(ctx, ManagedBySelector)
		return tektonfiltered.WithSelectors(ctx, ManagedBySelector)
	})
	fakekubeclient.Get(ctx).PrependReactor("create", "pods", dryRun)
	impl := NewController(Options{
		Images:          pipeline.Images{ShellImage: "busybox", WorkingDirInitImage: "workingdirinit"},
		EntrypointImage: "pip-entrypoint",
		Bounds:          observe.DefaultBounds,
	})(ctx, configmap.NewStaticWatcher())
	if impl == nil {
		t.Fatal("no controller")
	}
	waitInformers, err := rtesting.RunAndSyncInformers(ctx, informers...)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, impl, func() {
		cancel()
		waitInformers()
	}
}

// The controller's wiring, as sharedmain runs it (with fake clients): informers on the
// selector cmd/controller sets, a CustomRun of ours enqueued and reconciled through the
// real preparation (resolve, compile, assemble) into its pod.
func TestNewController(t *testing.T) {
	ctx, impl, stop := setupController(t)
	defer stop()
	// Tekton's pod builder reads the run's ServiceAccount for credentials.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	if _, err := fakekubeclient.Get(ctx).CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cr, err := v1alpha1.FromPipelineRun(&v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: ns},
		Spec: v1.PipelineRunSpec{PipelineSpec: &v1.PipelineSpec{Tasks: []v1.PipelineTask{{
			Name:     "a",
			TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo a"}}}},
		}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fakepipelineclient.Get(ctx).TektonV1beta1().CustomRuns(ns).Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = impl.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got, err := fakepipelineclient.Get(ctx).TektonV1beta1().CustomRuns(ns).Get(ctx, "run", metav1.GetOptions{})
		pod, perr := fakekubeclient.Get(ctx).CoreV1().Pods(ns).Get(ctx, plan.PodName("run", 0), metav1.GetOptions{})
		if err == nil && got.Status.StartTime != nil && perr == nil {
			if pod.Annotations[plan.AnnotationPlan] == "" || pod.Annotations[AnnotationRun] == "" {
				t.Errorf("pod annotations %v: want the plan and the run record", pod.Annotations)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the CustomRun was not reconciled")
}

// A ResolutionRequest that finishes enqueues the CustomRun waiting on it: a Pipeline's or
// Task's, which the CustomRun owns, and a StepAction's, which Tekton makes the child
// TaskRun own.
func TestResolutionRequestsEnqueueTheirCustomRun(t *testing.T) {
	ctx, impl, stop := setupController(t)
	defer stop()
	cr := newCustomRun("run")
	tr := &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{
		Name: "run-a", Namespace: ns, UID: "run-a-uid",
		Labels:          map[string]string{v1.ManagedByLabelKey: v1alpha1.ManagedBy, pipeline.CustomRunKey: cr.Name},
		OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(cr)},
	}}
	if _, err := fakepipelineclient.Get(ctx).TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := ns + "/" + cr.Name
	if got := nextKey(t, impl); got != want {
		t.Fatalf("the TaskRun enqueued %q, want %q", got, want)
	}
	for _, owner := range []kmeta.OwnerRefable{tr, cr} {
		rr := &resolutionv1beta1.ResolutionRequest{ObjectMeta: metav1.ObjectMeta{
			Name: "request-of-" + owner.GetObjectMeta().GetName(), Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(owner)},
		}}
		if _, err := fakeresolutionclient.Get(ctx).ResolutionV1beta1().ResolutionRequests(ns).Create(ctx, rr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := nextKey(t, impl); got != want {
			t.Errorf("a ResolutionRequest owned by %s %s enqueued %q, want %q", owner.GetGroupVersionKind().Kind, owner.GetObjectMeta().GetName(), got, want)
		}
	}
}

// nextKey takes the next key off the controller's work queue.
func nextKey(t *testing.T, impl *controller.Impl) string {
	t.Helper()
	q := impl.WorkQueue()
	got := make(chan string, 1)
	go func() {
		item, shutdown := q.Get()
		if shutdown {
			return
		}
		q.Forget(item)
		q.Done(item)
		got <- fmt.Sprint(item)
	}()
	select {
	case k := <-got:
		return k
	case <-time.After(10 * time.Second):
		t.Fatal("nothing was enqueued")
		return ""
	}
}
