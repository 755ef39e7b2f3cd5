package reconciler

import (
	"context"
	"fmt"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
func WatchTektonConfig(ctx context.Context, kc kubernetes.Interface, namespace string) (*config.Store, error) {
	store := config.NewStore(logging.FromContext(ctx).Named("tekton-config"))
	w := informer.NewInformedWatcher(kc, namespace)
	store.WatchConfigs(defaulting{w})
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
