package resolve

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	pipinpod "github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
)

// mapResolver serves Pipelines by name and counts the fetches.
type mapResolver struct {
	pipelines map[string]*v1.Pipeline
	fetches   int
}

func (m *mapResolver) Pipeline(_ context.Context, ref *v1.PipelineRef, _ *v1.PipelineRun) (*v1.Pipeline, error) {
	m.fetches++
	p, ok := m.pipelines[ref.Name]
	if !ok {
		return nil, fmt.Errorf("pipeline %q not found", ref.Name)
	}
	return p.DeepCopy(), nil
}

func (m *mapResolver) Task(context.Context, v1.PipelineTask) (*v1.Task, error) {
	return nil, fmt.Errorf("no Tasks here")
}

func (m *mapResolver) StepActions(_ context.Context, ts v1.TaskSpec, _ *v1.TaskRun) ([]v1.Step, error) {
	return ts.Steps, nil
}

func leaf(name string) v1.PipelineTask {
	return v1.PipelineTask{Name: name, TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox", Command: []string{"true"}}}}}}
}

func ref(task, pipeline string) v1.PipelineTask {
	return v1.PipelineTask{Name: task, PipelineRef: &v1.PipelineRef{Name: pipeline}}
}

func pipelineOf(name string, tasks ...v1.PipelineTask) *v1.Pipeline {
	return &v1.Pipeline{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Spec: v1.PipelineSpec{Tasks: tasks}}
}

func runOf(pipeline string) *v1beta1.CustomRun {
	return &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns"},
		Spec: v1beta1.CustomRunSpec{CustomRef: &v1beta1.TaskRef{
			APIVersion: pipinpod.APIVersion, Kind: pipinpod.Kind, Name: pipeline,
		}},
	}
}

// tektonCtx has Tekton's configuration with alpha API fields (pipelineRef in a Pipeline
// is one).
func tektonCtx(t *testing.T) context.Context {
	return withFeatureFlags(t, map[string]string{"enable-api-fields": config.AlphaAPIFields})
}

// withFeatureFlags carries Tekton's configuration with the feature-flags data.
func withFeatureFlags(t *testing.T, data map[string]string) context.Context {
	t.Helper()
	cfg, err := pipinpod.TektonConfig(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.GetFeatureFlagsConfigName()}, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return config.ToContext(context.Background(), cfg)
}

// Cycles, over-deep nesting and too many tasks are refused before more is fetched,
// with the field and the chain named.
func TestResolveRefusesCyclesAndExplosions(t *testing.T) {
	pipInPod := v1.PipelineTask{Name: "again", TaskRef: &v1.TaskRef{APIVersion: pipinpod.APIVersion, Kind: v1.TaskKind(pipinpod.Kind), Name: "self"}}
	tree := map[string]*v1.Pipeline{}
	for d := range 16 {
		tree[fmt.Sprintf("p%d", d)] = pipelineOf(fmt.Sprintf("p%d", d), ref("l", fmt.Sprintf("p%d", d+1)), ref("r", fmt.Sprintf("p%d", d+1)))
	}
	tree["p16"] = pipelineOf("p16", leaf("t"))
	chain := map[string]*v1.Pipeline{}
	for d := range 12 {
		chain[fmt.Sprintf("c%d", d)] = pipelineOf(fmt.Sprintf("c%d", d), ref("next", fmt.Sprintf("c%d", d+1)))
	}
	chain["c12"] = pipelineOf("c12", leaf("t"))
	wide := map[string]*v1.Pipeline{"wide": pipelineOf("wide")}
	for i := range 2 {
		pt := leaf(fmt.Sprintf("m%d", i))
		var vals []string
		for j := range 200 {
			vals = append(vals, fmt.Sprint(j))
		}
		pt.Matrix = &v1.Matrix{Params: v1.Params{{Name: "x", Value: *v1.NewStructuredValues(vals[0], vals[1:]...)}}}
		pt.TaskSpec.Params = v1.ParamSpecs{{Name: "x"}}
		wide["wide"].Spec.Tasks = append(wide["wide"].Spec.Tasks, pt)
	}
	flat := map[string]*v1.Pipeline{"flat": pipelineOf("flat")}
	for i := range 300 {
		flat["flat"].Spec.Tasks = append(flat["flat"].Spec.Tasks, leaf(fmt.Sprintf("t%d", i)))
	}
	for _, tc := range []struct {
		name      string
		pipelines map[string]*v1.Pipeline
		run       string
		want      []string
		maxFetch  int
	}{{
		name:      "a → b → a",
		pipelines: map[string]*v1.Pipeline{"a": pipelineOf("a", ref("to-b", "b")), "b": pipelineOf("b", ref("to-a", "a"))},
		run:       "a",
		want:      []string{"spec.pipelineSpec.tasks[0].pipelineSpec.tasks[0].pipelineRef", `pipeline "a" → "b" → "a"`, "runs itself"},
		maxFetch:  2,
	}, {
		name:      "self-reference",
		pipelines: map[string]*v1.Pipeline{"self": pipelineOf("self", leaf("t"), ref("again", "self"))},
		run:       "self",
		want:      []string{"spec.pipelineSpec.tasks[1].pipelineRef", `pipeline "self" → "self"`},
		maxFetch:  1,
	}, {
		name:      "a PipelineInPod task naming its own Pipeline",
		pipelines: map[string]*v1.Pipeline{"self": pipelineOf("self", leaf("t"), pipInPod)},
		run:       "self",
		want:      []string{"spec.pipelineSpec.tasks[1].taskRef", `pipeline "self" → "self"`},
		maxFetch:  1,
	}, {
		name:      "binary tree of depth 16",
		pipelines: tree,
		run:       "p0",
		want:      []string{"nest more than 10 levels", `"p0" → "p1" → "p2"`},
		maxFetch:  MaxDepth + 1,
	}, {
		name:      "a chain 12 deep",
		pipelines: chain,
		run:       "c0",
		want:      []string{"nest more than 10 levels"},
		maxFetch:  MaxDepth + 1,
	}, {
		name:      "two matrices of 200",
		pipelines: wide,
		run:       "wide",
		want:      []string{"spec.pipelineSpec.tasks", "more than 256 tasks"},
		maxFetch:  1,
	}, {
		name:      "300 tasks",
		pipelines: flat,
		run:       "flat",
		want:      []string{"spec.pipelineSpec.tasks", "more than 256 tasks"},
		maxFetch:  1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := &mapResolver{pipelines: tc.pipelines}
			start := time.Now()
			_, err := Resolve(tektonCtx(t), r, runOf(tc.run))
			if err == nil {
				t.Fatal("resolved; want a refusal")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			t.Log(err)
			if r.fetches > tc.maxFetch {
				t.Errorf("%d Pipelines fetched before the refusal, want at most %d", r.fetches, tc.maxFetch)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refused after %v", d)
			}
		})
	}
}

// What stays within the bounds resolves: a Pipeline used twice side by side is not a
// cycle, and nesting exactly MaxDepth deep is allowed.
func TestResolveWithinBounds(t *testing.T) {
	ps := map[string]*v1.Pipeline{
		"top":    pipelineOf("top", ref("one", "shared"), ref("two", "shared")),
		"shared": pipelineOf("shared", leaf("t")),
	}
	for d := range MaxDepth {
		ps[fmt.Sprintf("c%d", d)] = pipelineOf(fmt.Sprintf("c%d", d), ref("next", fmt.Sprintf("c%d", d+1)))
	}
	ps[fmt.Sprintf("c%d", MaxDepth)] = pipelineOf("last", leaf("t"))
	for _, run := range []string{"top", "c0"} {
		if _, err := Resolve(tektonCtx(t), &mapResolver{pipelines: ps}, runOf(run)); err != nil {
			t.Errorf("%s: %v", run, err)
		}
	}
}
