package resolve

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	remoteresource "github.com/tektoncd/pipeline/pkg/remoteresolution/resource"
	remoteresolution "github.com/tektoncd/pipeline/test/remoteresolution"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	pipinpod "github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
)

// paramsRecorder is a cluster resolver that records the params of every request and
// serves the object its "name" param names.
type paramsRecorder struct {
	t       *testing.T
	objects map[string]any
	got     []map[string]string
}

func (p *paramsRecorder) Submit(_ context.Context, _ remoteresource.ResolverName, req remoteresource.Request) (remoteresource.ResolvedResource, error) {
	params := map[string]string{}
	for _, prm := range req.ResolverPayload().ResolutionSpec.Params {
		params[prm.Name] = prm.Value.StringVal
	}
	p.got = append(p.got, params)
	obj, ok := p.objects[params["name"]]
	if !ok {
		return remoteresolution.NewResolvedResource(nil, nil, nil, errNotServed(params["name"])), nil
	}
	data, err := yaml.Marshal(obj)
	if err != nil {
		p.t.Fatal(err)
	}
	return remoteresolution.NewResolvedResource(data, nil, &v1.RefSource{URI: "cluster"}, nil), nil
}

type errNotServed string

func (e errNotServed) Error() string { return "not served: " + string(e) }

func clusterRef(params map[string]string) v1.ResolverRef {
	ref := v1.ResolverRef{Resolver: "cluster"}
	for _, k := range []string{"kind", "name", "namespace", "pipeline", "run", "tag", "after"} {
		if v, ok := params[k]; ok {
			ref.Params = append(ref.Params, v1.Param{Name: k, Value: *v1.NewStructuredValues(v)})
		}
	}
	return ref
}

func taskOf(name string) *v1.Task {
	return &v1.Task{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "Task"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox", Command: []string{"true"}}}},
	}
}

// Resolver params are substituted as Tekton substitutes them before it submits the
// ResolutionRequest: a pipelineRef's (the run's own and a pipeline task's) with the
// params of the PipelineRun that runs it and its context; a taskRef's with the Pipeline's
// params (the run's values over the Pipeline's defaults), its context, after Tekton's
// ApplyParameters and ApplyContexts; a task result reference is left as written, since
// Tekton resolves every task before any result exists.
func TestResolverParamsSubstituted(t *testing.T) {
	outer := &v1.Pipeline{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{Name: "outer"},
		Spec: v1.PipelineSpec{
			Params: v1.ParamSpecs{{Name: "taskname"}, {Name: "child"}, {Name: "tag", Default: v1.NewStructuredValues("v1")}},
			Tasks: []v1.PipelineTask{{
				Name:     "a",
				TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Results: []v1.TaskResult{{Name: "r"}}, Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo"}}}},
			}, {
				Name: "b",
				TaskRef: &v1.TaskRef{ResolverRef: clusterRef(map[string]string{
					"kind": "task", "name": "$(params.taskname)", "namespace": "$(context.pipelineRun.namespace)",
					"pipeline": "$(context.pipeline.name)", "run": "$(context.pipelineRun.name)", "tag": "$(params.tag)",
					"after": "$(tasks.a.results.r)",
				})},
			}, {
				Name: "c",
				PipelineRef: &v1.PipelineRef{ResolverRef: clusterRef(map[string]string{
					"kind": "pipeline", "name": "$(params.child)", "run": "$(context.pipelineRun.name)",
				})},
				Params: v1.Params{{Name: "who", Value: *v1.NewStructuredValues("$(params.taskname)-$(params.tag)")}},
			}},
		},
	}
	inner := &v1.Pipeline{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{Name: "inner"},
		Spec: v1.PipelineSpec{
			Params: v1.ParamSpecs{{Name: "who"}},
			Tasks: []v1.PipelineTask{{
				Name:    "d",
				TaskRef: &v1.TaskRef{ResolverRef: clusterRef(map[string]string{"kind": "task", "name": "$(params.who)", "pipeline": "$(context.pipeline.name)"})},
			}},
		},
	}
	cr := &v1beta1.CustomRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1beta1", Kind: "CustomRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns", UID: "cr-uid"},
		Spec: v1beta1.CustomRunSpec{
			CustomRef: &v1beta1.TaskRef{APIVersion: pipinpod.APIVersion, Kind: pipinpod.Kind, ResolverRef: v1beta1.ResolverRef{
				Resolver: "cluster",
				Params: v1beta1.Params{
					{Name: "kind", Value: *v1beta1.NewStructuredValues("pipeline")},
					{Name: "name", Value: *v1beta1.NewStructuredValues("$(params.pipeline)")},
					{Name: "namespace", Value: *v1beta1.NewStructuredValues("$(context.pipelineRun.namespace)")},
					{Name: "run", Value: *v1beta1.NewStructuredValues("$(context.pipelineRun.name)")},
				},
			}},
			Params: v1beta1.Params{
				{Name: "pipeline", Value: *v1beta1.NewStructuredValues("outer")},
				{Name: "taskname", Value: *v1beta1.NewStructuredValues("build")},
				{Name: "child", Value: *v1beta1.NewStructuredValues("inner")},
			},
		},
	}
	rec := &paramsRecorder{t: t, objects: map[string]any{"outer": outer, "inner": inner, "build": taskOf("build"), "build-v1": taskOf("build-v1")}}
	r := NewClientResolver(k8sfake.NewSimpleClientset(), tektonfake.NewSimpleClientset(), rec, cr, nil)
	ctx := tektonCtx(t)
	res, err := Resolve(ctx, r, cr)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{
		{"kind": "pipeline", "name": "outer", "namespace": "ns", "run": "run"},
		{"kind": "task", "name": "build", "namespace": "ns", "pipeline": "outer", "run": "run", "tag": "v1", "after": "$(tasks.a.results.r)"},
		{"kind": "pipeline", "name": "inner", "run": "run"},
		{"kind": "task", "name": "build-v1", "pipeline": "inner"},
	}
	if d := cmp.Diff(want, rec.got); d != "" {
		t.Errorf("resolver params (-want +got):\n%s", d)
	}
	if got := res.Pipelines["c"].Tasks["d"].TaskName; got != "build-v1" {
		t.Errorf("child task d resolved to %q, want build-v1", got)
	}

	// Task b's resolver params are what Tekton's own substitution makes of them.
	ps := outer.Spec.DeepCopy()
	ps.SetDefaults(ctx)
	ps, err = prresources.ApplyParameters(ps, res.PipelineRun)
	if err != nil {
		t.Fatal(err)
	}
	ps = prresources.ApplyContexts(ps, "outer", res.PipelineRun)
	tekton := map[string]string{}
	for _, p := range ps.Tasks[1].TaskRef.Params {
		tekton[p.Name] = p.Value.StringVal
	}
	if d := cmp.Diff(tekton, rec.got[1]); d != "" {
		t.Errorf("task b's resolver params differ from Tekton's substitution (-tekton +got):\n%s", d)
	}
}
