package reconciler

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/configmap"
	"knative.dev/pkg/configmap/informer"
	"knative.dev/pkg/logging"
)

// DefaultTektonNamespace is the namespace Tekton Pipelines' release installs its
// controller and its ConfigMaps in.
const DefaultTektonNamespace = "tekton-pipelines"

// tektonConfigTimeout bounds the wait for the first read of Tekton's ConfigMaps (a
// variable for the tests).
var tektonConfigTimeout = time.Minute

// WatchTektonConfig returns Tekton's own config store (pkg/apis/config, the one Tekton's
// TaskRun and PipelineRun reconcilers use), kept up to date by an informer on the
// ConfigMaps of Tekton's namespace: feature-flags, config-defaults and the others the
// store reads. The reconciler puts its current content into the context of every
// reconcile, so a run is defaulted and validated as the cluster's Tekton would, and a
// changed ConfigMap counts from the next reconcile on, without a restart.
//
// A ConfigMap missing from the namespace counts as Tekton's defaults (Tekton's own
// controller would not start without it). It returns once every ConfigMap was read, or
// fails when the namespace cannot be listed (wrong namespace, no RBAC) in time.
//
// The Tekton version its pipelines-info ConfigMap states is kept in version.
func WatchTektonConfig(ctx context.Context, kc kubernetes.Interface, namespace string, version *TektonVersion) (*config.Store, error) {
	store := config.NewStore(logging.FromContext(ctx).Named("tekton-config"))
	w := informer.NewInformedWatcher(kc, namespace)
	store.WatchConfigs(defaulting{w})
	defaulting{w}.Watch(PipelinesInfoConfigMap, version.observe)
	started := make(chan error, 1)
	go func() { started <- w.Start(ctx.Done()) }()
	select {
	case err := <-started:
		if err != nil {
			return nil, fmt.Errorf("watching Tekton's ConfigMaps in namespace %s: %w", namespace, err)
		}
	case <-time.After(tektonConfigTimeout):
		return nil, fmt.Errorf("reading Tekton's ConfigMaps in namespace %s: nothing read within %v: is Tekton installed there (-tekton-namespace), and may the controller list and watch ConfigMaps there (config/)?", namespace, tektonConfigTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return store, nil
}

// defaulting registers every ConfigMap with an empty default: a missing one is read as
// Tekton's defaults instead of failing the watcher's start, and one deleted later
// falls back to them.
type defaulting struct{ *informer.InformedWatcher }

func (d defaulting) Watch(name string, o ...configmap.Observer) {
	d.WatchWithDefault(corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace}}, o...)
}

// PipelinesInfoConfigMap is the ConfigMap in Tekton's namespace whose data.version is
// the installed release (Tekton's config/config-info.yaml; tkn version reads it).
const PipelinesInfoConfigMap = "pipelines-info"

// managedByRelease is the first Tekton release that leaves a TaskRun whose
// spec.managedBy names another controller alone (pkg/reconciler/taskrun/controller.go,
// taskRunFilterManagedBy).
var managedByRelease = version.MustParseSemantic("v1.5.0")

// TektonVersion is the Tekton release the cluster runs, as its pipelines-info ConfigMap
// says; unknown ("devel", missing, unparsable) until it says a release.
type TektonVersion struct {
	v atomic.Pointer[version.Version]
}

func (t *TektonVersion) observe(cm *corev1.ConfigMap) {
	v, err := version.ParseSemantic(cm.Data["version"])
	if err != nil {
		v = nil
	}
	t.v.Store(v)
}

// HonoursManagedBy tells whether the cluster's Tekton is known to leave TaskRuns managed
// by another controller alone (compile.WithManagedByHonoured); false when unknown, the
// safe answer.
func (t *TektonVersion) HonoursManagedBy() bool {
	if t == nil {
		return false
	}
	v := t.v.Load()
	return v != nil && v.AtLeast(managedByRelease)
}
