// Package compiletest compiles runs written as YAML, for the tests of compile and of
// the stages after it.
package compiletest

import (
	"context"
	"maps"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/render"
	"github.com/pipelineinpod/pipelineinpod/pkg/resolve"
)

// Run is a compiled run and what compiled it, which the later stages take too, with
// the context Context gives.
type Run struct {
	Compiled   *compile.Compiled
	Resolver   resolve.Resolver
	KubeClient *k8sfake.Clientset
}

// Compile resolves and compiles the one run (PipelineRun or CustomRun) in doc, as the
// controller does, against fake clientsets holding the doc's Pipelines and the run's
// default service account. The error is resolve's or compile's.
func Compile(t testing.TB, doc string) (*Run, error) {
	t.Helper()
	return CompileWith(Context(t), t, doc)
}

// CompileWith is Compile with the Tekton configuration ctx carries (see WithFlags).
func CompileWith(ctx context.Context, t testing.TB, doc string) (*Run, error) {
	t.Helper()
	docs, err := render.Parse("doc.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := render.Runs(docs)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %v %v", runs, err)
	}
	cr := runs[0].CustomRun
	var pipelines []runtime.Object
	for _, d := range docs {
		if p, ok := d.Object.(*v1.Pipeline); ok {
			p.Namespace = cr.Namespace
			pipelines = append(pipelines, p)
		}
	}
	r := &Run{KubeClient: k8sfake.NewSimpleClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: cr.Namespace}})}
	r.Resolver = resolve.NewClientResolver(r.KubeClient, tektonfake.NewSimpleClientset(pipelines...), nil, cr, nil)
	resolved, err := resolve.Resolve(ctx, r.Resolver, cr)
	if err != nil {
		return nil, err
	}
	r.Compiled, err = compile.Compile(ctx, cr, resolved)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// WithFlags is Context with some Tekton feature flags set otherwise, as a cluster's
// feature-flags ConfigMap would.
func WithFlags(t testing.TB, flags map[string]string) context.Context {
	t.Helper()
	all := onePodFlags()
	maps.Copy(all, flags)
	return ContextWith(t, FeatureFlags(all))
}

// onePodFlags turn on the features one pod can hold (alpha API fields such as
// pipelines in pipelines, param enums), as on a cluster whose Tekton enables them.
func onePodFlags() map[string]string {
	return map[string]string{
		"enable-api-fields": config.AlphaAPIFields,
		"enable-param-enum": "true",
	}
}

// Context carries the Tekton configuration the tests of compile and the later stages
// build with: Tekton's defaults with the features one pod can hold turned on (alpha API
// fields such as pipelines in pipelines, param enums), as on a cluster whose Tekton
// enables them. The controller builds with the cluster's configuration.
func Context(t testing.TB) context.Context {
	t.Helper()
	return ContextWith(t, FeatureFlags(onePodFlags()))
}

// ContextWith carries the Tekton configuration of the ConfigMaps (feature-flags,
// config-defaults, ...): Tekton's defaults for what they leave out.
func ContextWith(t testing.TB, cms ...*corev1.ConfigMap) context.Context {
	t.Helper()
	cfg, err := v1alpha1.TektonConfig(cms...)
	if err != nil {
		t.Fatal(err)
	}
	return config.ToContext(context.Background(), cfg)
}

// FeatureFlags is Tekton's feature-flags ConfigMap with data.
func FeatureFlags(data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.GetFeatureFlagsConfigName()}, Data: data}
}

// Defaults is Tekton's config-defaults ConfigMap with data.
func Defaults(data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.GetDefaultsConfigName()}, Data: data}
}
