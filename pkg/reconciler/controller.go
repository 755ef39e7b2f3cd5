package reconciler

import (
	"context"
	"strings"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	pipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client"
	filteredtaskruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun/filtered"
	customruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1beta1/customrun"
	customrunreconciler "github.com/tektoncd/pipeline/pkg/client/injection/reconciler/pipeline/v1beta1/customrun"
	resolutioninformer "github.com/tektoncd/pipeline/pkg/client/resolution/injection/informers/resolution/v1beta1/resolutionrequest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	kubeclient "knative.dev/pkg/client/injection/kube/client"
	filteredpodinformer "knative.dev/pkg/client/injection/kube/informers/core/v1/pod/filtered"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/kmeta"
	"knative.dev/pkg/logging"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
)

// ManagedBySelector selects what this controller creates. Pods and TaskRuns are watched
// through informers filtered with it, so the controller caches its own objects only, not
// every pod and TaskRun of the cluster. cmd/controller passes it to both filtered
// informer factories (knative's for pods, Tekton's for TaskRuns).
const ManagedBySelector = v1.ManagedByLabelKey + "=" + v1alpha1.ManagedBy

// ControllerName is the event source and work queue name.
const ControllerName = "pipelineinpod-controller"

// Options configure the controller.
type Options struct {
	// NewPreparer builds the stages (it needs the injection context for its clients and
	// the ResolutionRequest lister).
	NewPreparer     func(ctx context.Context) (Preparer, error)
	Bounds          observe.Bounds
	RequeueInterval time.Duration
}

// isOurs filters CustomRuns to those of kind PipelineInPod: other custom tasks' runs are
// not even enqueued (nor promoted when this replica becomes leader).
func isOurs(obj any) bool {
	cr, ok := obj.(*v1beta1.CustomRun)
	return ok && v1alpha1.IsPipelineInPod(cr)
}

// NewController returns the constructor sharedmain runs.
func NewController(opts Options) func(context.Context, configmap.Watcher) *controller.Impl {
	return func(ctx context.Context, _ configmap.Watcher) *controller.Impl {
		logger := logging.FromContext(ctx)
		podInformer := filteredpodinformer.Get(ctx, ManagedBySelector)
		taskRunInformer := filteredtaskruninformer.Get(ctx, ManagedBySelector)
		customRunInformer := customruninformer.Get(ctx)
		resolutionInformer := resolutioninformer.Get(ctx)

		preparer, err := opts.NewPreparer(ctx)
		if err != nil {
			logger.Fatalw("Cannot set up the resolve/compile/build stages", "error", err)
		}
		r := &Reconciler{
			KubeClient:      kubeclient.Get(ctx),
			PipelineClient:  pipelineclient.Get(ctx),
			PodLister:       podInformer.Lister(),
			TaskRunLister:   taskRunInformer.Lister(),
			CustomRunLister: customRunInformer.Lister(),
			Preparer:        preparer,
			Reports:         PodLogReports{KubeClient: kubeclient.Get(ctx)},
			Clock:           clock.RealClock{},
			Bounds:          opts.Bounds,
			RequeueInterval: opts.RequeueInterval,
		}
		impl := customrunreconciler.NewImpl(ctx, r, func(*controller.Impl) controller.Options {
			return controller.Options{AgentName: ControllerName, PromoteFilterFunc: isOurs}
		})

		must := func(_ cache.ResourceEventHandlerRegistration, err error) {
			if err != nil {
				logger.Panicf("Couldn't register an informer event handler: %v", err)
			}
		}
		must(customRunInformer.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
			FilterFunc: isOurs,
			Handler:    controller.HandleAll(impl.Enqueue),
		}))
		// Pod status changes (containers starting, failing, ending), TaskRun changes (a
		// stale write to undo) and finished ResolutionRequests all concern the CustomRun
		// that owns them.
		ownedByCustomRun := controller.FilterController(&v1beta1.CustomRun{})
		for _, inf := range []cache.SharedIndexInformer{podInformer.Informer(), taskRunInformer.Informer()} {
			must(inf.AddEventHandler(cache.FilteringResourceEventHandler{
				FilterFunc: ownedByCustomRun,
				Handler:    controller.HandleAll(impl.EnqueueControllerOf),
			}))
		}
		// Tekton's resolution functions take a PipelineRun as the ResolutionRequest's
		// owner; resolve hands them the CustomRun seen as a PipelineRun (same name), so
		// the owner's name, whatever its kind, is the key to reconcile. A key that is no
		// CustomRun of ours is a no-op.
		must(resolutionInformer.Informer().AddEventHandler(controller.HandleAll(func(obj any) {
			m, err := kmeta.DeletionHandlingAccessor(obj)
			if err != nil {
				return
			}
			if owner := metav1.GetControllerOf(m); owner != nil && strings.HasPrefix(owner.APIVersion, "tekton.dev/") {
				impl.EnqueueKey(types.NamespacedName{Namespace: m.GetNamespace(), Name: owner.Name})
			}
		})))
		return impl
	}
}
