package reconciler

import (
	"context"
	"testing"
	"time"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"

	fakepipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client/fake"
	tektonfiltered "github.com/tektoncd/pipeline/pkg/client/injection/informers/factory/filtered"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/informers/factory/filtered/fake"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun/filtered/fake"
	_ "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1beta1/customrun/fake"
	_ "github.com/tektoncd/pipeline/pkg/client/resolution/injection/client/fake"
	_ "github.com/tektoncd/pipeline/pkg/client/resolution/injection/informers/resolution/v1beta1/resolutionrequest/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakekubeclient "knative.dev/pkg/client/injection/kube/client/fake"
	_ "knative.dev/pkg/client/injection/kube/informers/core/v1/pod/filtered/fake"
	kubefiltered "knative.dev/pkg/client/injection/kube/informers/factory/filtered"
	_ "knative.dev/pkg/client/injection/kube/informers/factory/filtered/fake"
	"knative.dev/pkg/configmap"
	rtesting "knative.dev/pkg/reconciler/testing"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
)

// The controller's wiring, as sharedmain runs it (with fake clients): informers on the
// selector cmd/controller sets, a CustomRun of ours enqueued and reconciled.
func TestNewController(t *testing.T) {
	ctx, cancel, informers := rtesting.SetupFakeContextWithCancel(t, func(ctx context.Context) context.Context {
		ctx = kubefiltered.WithSelectors(ctx, ManagedBySelector)
		return tektonfiltered.WithSelectors(ctx, ManagedBySelector)
	})
	defer cancel()
	prep := &fakePreparer{tasks: []taskDef{taskA}}
	impl := NewController(Options{
		NewPreparer: func(context.Context) (Preparer, error) { return prep, nil },
		Bounds:      observe.DefaultBounds,
	})(ctx, configmap.NewStaticWatcher())
	if impl == nil {
		t.Fatal("no controller")
	}
	cr := newCustomRun("run")
	if _, err := fakepipelineclient.Get(ctx).TektonV1beta1().CustomRuns(ns).Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitInformers, err := rtesting.RunAndSyncInformers(ctx, informers...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		waitInformers()
	}()
	go func() { _ = impl.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got, err := fakepipelineclient.Get(ctx).TektonV1beta1().CustomRuns(ns).Get(ctx, "run", metav1.GetOptions{})
		_, perr := fakekubeclient.Get(ctx).CoreV1().Pods(ns).Get(ctx, assemble.PodName("run", 0), metav1.GetOptions{})
		if err == nil && got.Status.StartTime != nil && perr == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the CustomRun was not reconciled")
}
