package reconciler

import (
	"context"
	"time"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	pipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client"
	filteredtaskruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1/taskrun/filtered"
	verificationpolicyinformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1alpha1/verificationpolicy"
	customruninformer "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1beta1/customrun"
	customrunreconciler "github.com/tektoncd/pipeline/pkg/client/injection/reconciler/pipeline/v1beta1/customrun"
	resolutionclient "github.com/tektoncd/pipeline/pkg/client/resolution/injection/client"
	resolutioninformer "github.com/tektoncd/pipeline/pkg/client/resolution/injection/informers/resolution/v1beta1/resolutionrequest"
	"github.com/tektoncd/pipeline/pkg/pod"
	remoteresource "github.com/tektoncd/pipeline/pkg/remoteresolution/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
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
	// Images are Tekton's images the pods use (shell, working-dir initializer).
	Images pipeline.Images
	// EntrypointImage is this project's entrypoint image (cmd/entrypoint), run in every pod.
	EntrypointImage string
	Bounds          observe.Bounds
	RequeueInterval time.Duration
	// TektonNamespace is where Tekton's ConfigMaps (feature-flags, config-defaults, ...)
	// are read from; empty: DefaultTektonNamespace.
	TektonNamespace string
}

// isOurs filters CustomRuns to those of kind PipelineInPod: other custom tasks' runs are
// not even enqueued (nor promoted when this replica becomes leader).
func isOurs(obj any) bool {
	cr, ok := obj.(*v1beta1.CustomRun)
	return ok && v1alpha1.IsPipelineInPod(cr)
}

// NewController returns the constructor sharedmain runs. Its configmap.Watcher follows
// the controller's own namespace; Tekton's configuration is watched in Tekton's.
func NewController(opts Options) func(context.Context, configmap.Watcher) *controller.Impl {
	return func(ctx context.Context, _ configmap.Watcher) *controller.Impl {
		ns := opts.TektonNamespace
		if ns == "" {
			ns = DefaultTektonNamespace
		}
		tekton := &TektonVersion{}
		store, err := WatchTektonConfig(ctx, kubeclient.Get(ctx), ns, tekton)
		if err != nil {
			logging.FromContext(ctx).Fatalw("Cannot read Tekton's configuration", "error", err)
		}
		r := newReconciler(ctx, opts)
		r.Tekton = tekton
		impl := customrunreconciler.NewImpl(ctx, r, func(*controller.Impl) controller.Options {
			// The generated reconciler puts the store's configuration into the context
			// of every reconcile (store.ToContext), as Tekton's reconcilers do.
			return controller.Options{AgentName: ControllerName, PromoteFilterFunc: isOurs, ConfigStore: store, DemoteFunc: r.demote}
		})
		r.follow(impl)
		watch(ctx, impl)
		return impl
	}
}

// newReconciler builds the Reconciler from the injection context, its Preparer the real
// stages.
func newReconciler(ctx context.Context, opts Options) *Reconciler {
	kc, pc := kubeclient.Get(ctx), pipelineclient.Get(ctx)
	entrypoints, err := pod.NewEntrypointCache(kc)
	if err != nil {
		logging.FromContext(ctx).Fatalw("Cannot make the image entrypoint cache", "error", err)
	}
	// Pods request their peak demand at pod level where the API server has pod-level
	// resources; otherwise on the reporter container (README "Pod resources").
	podLevel, err := assemble.PodLevelResourcesSupported(kc.Discovery())
	if err != nil {
		logging.FromContext(ctx).Warnw("Cannot tell whether the API server has pod-level resources; sizing pods through the reporter container", "error", err)
	}
	logging.FromContext(ctx).Infow("Pod sizing", "podLevelResources", podLevel)
	return &Reconciler{
		KubeClient:      kc,
		PipelineClient:  pc,
		PodLister:       filteredpodinformer.Get(ctx, ManagedBySelector).Lister(),
		TaskRunLister:   filteredtaskruninformer.Get(ctx, ManagedBySelector).Lister(),
		CustomRunLister: customruninformer.Get(ctx).Lister(),
		Preparer: &prepare.Stages{
			Images:            opts.Images,
			EntrypointImage:   opts.EntrypointImage,
			KubeClient:        kc,
			PipelineClient:    pc,
			Requester:         remoteresource.NewCRDRequester(resolutionclient.Get(ctx), resolutioninformer.Get(ctx).Lister()),
			EntrypointCache:   entrypoints,
			PodLevelResources: podLevel,
			// Tekton's verification of remote Tasks and Pipelines (trusted resources).
			VerificationPolicies: verificationpolicyinformer.Get(ctx).Lister(),
		},
		Reports:         NewFollowers(ctx, PodLogs{KubeClient: kc}, opts.RequeueInterval),
		Clock:           clock.RealClock{},
		Bounds:          opts.Bounds,
		RequeueInterval: opts.RequeueInterval,
	}
}

// watch enqueues a CustomRun of ours when it or anything it waits on changes.
func watch(ctx context.Context, impl *controller.Impl) {
	must := func(_ cache.ResourceEventHandlerRegistration, err error) {
		if err != nil {
			logging.FromContext(ctx).Panicf("Couldn't register an informer event handler: %v", err)
		}
	}
	podInformer := filteredpodinformer.Get(ctx, ManagedBySelector)
	taskRunInformer := filteredtaskruninformer.Get(ctx, ManagedBySelector)
	resolutionInformer := resolutioninformer.Get(ctx)
	must(customruninformer.Get(ctx).Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: isOurs,
		Handler:    controller.HandleAll(impl.Enqueue),
	}))
	// Pod status changes (containers starting, failing, ending), TaskRun changes (a stale
	// write to undo) and finished ResolutionRequests for Pipelines and Tasks (which
	// resolve makes the CustomRun own) concern the CustomRun that owns them.
	ownedByCustomRun := controller.FilterController(&v1beta1.CustomRun{})
	for _, inf := range []cache.SharedIndexInformer{podInformer.Informer(), taskRunInformer.Informer(), resolutionInformer.Informer()} {
		must(inf.AddEventHandler(cache.FilteringResourceEventHandler{
			FilterFunc: ownedByCustomRun,
			Handler:    controller.HandleAll(impl.EnqueueControllerOf),
		}))
	}
	// Tekton makes the child TaskRun own the ResolutionRequest of a StepAction: its
	// CustomRun is the TaskRun's owner.
	taskRuns := taskRunInformer.Lister()
	must(resolutionInformer.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: controller.FilterController(&v1.TaskRun{}),
		Handler: controller.HandleAll(func(obj any) {
			m, err := kmeta.DeletionHandlingAccessor(obj)
			if err != nil {
				return
			}
			if tr, err := taskRuns.TaskRuns(m.GetNamespace()).Get(metav1.GetControllerOf(m).Name); err == nil {
				impl.EnqueueControllerOf(tr)
			}
		}),
	}))
}
