package main

import (
	"context"
	"reflect"
	"runtime"

	"k8s.io/client-go/rest"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"
)

// unusedInformers are informers that linking Tekton's packages registers with knative's
// injection (an informer package registers itself when imported:
// pkg/reconciler/pipelinerun/resources imports Tekton's TaskRun reconciler, which imports
// these) and that this controller never reads. sharedmain would start them: they would
// list and watch every Secret and LimitRange of the cluster, which the controller's RBAC
// (config/200-clusterrole.yaml) does not and should not allow. A code path that did read
// one would fail at once (knative's Get panics on an informer missing from the context).
// Named by their injector functions. (The VerificationPolicy informer is read: resolution
// verifies remote Tasks and Pipelines against the policies of the run's namespace.)
var unusedInformers = map[string]string{
	"knative.dev/pkg/client/injection/kube/informers/core/v1/secret.withInformer":     "secrets",
	"knative.dev/pkg/client/injection/kube/informers/core/v1/limitrange.withInformer": "limitranges",
}

// withoutInformers is knative's injection with the unused informers left out.
type withoutInformers struct {
	injection.Interface
	drop map[string]string
}

func injectorName(f injection.InformerInjector) string {
	return runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
}

func (w withoutInformers) GetInformers() []injection.InformerInjector {
	var out []injection.InformerInjector
	for _, ii := range w.Interface.GetInformers() {
		if _, drop := w.drop[injectorName(ii)]; !drop {
			out = append(out, ii)
		}
	}
	return out
}

// SetupInformers is knative's (injection's impl.SetupInformers), through the filtered
// GetInformers: the embedded one would call its own. Each injector returns ctx with its
// client or informer added, so ctx grows in the loops by design, as in knative's.
//
//nolint:fatcontext // see above
func (w withoutInformers) SetupInformers(ctx context.Context, cfg *rest.Config) (context.Context, []controller.Informer) {
	for _, ci := range w.GetClients() {
		ctx = ci(ctx, cfg)
	}
	for _, ifi := range w.GetInformerFactories() {
		ctx = ifi(ctx)
	}
	for _, duck := range w.GetDucks() {
		ctx = duck(ctx)
	}
	var informers []controller.Informer
	for _, ii := range w.GetInformers() {
		var inf controller.Informer
		ctx, inf = ii(ctx)
		informers = append(informers, inf)
	}
	for _, fii := range w.GetFilteredInformers() {
		var infs []controller.Informer
		ctx, infs = fii(ctx)
		informers = append(informers, infs...)
	}
	return ctx, informers
}
