package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

// renderBytes renders one file's bytes and logs how long it took. Timings are not
// asserted here (the machine running tests may be loaded); BenchmarkHostile measures them.
// Alpha API fields are on: the bounds of nested pipelines (an alpha field) are tested.
func renderBytes(t *testing.T, name string, data []byte) ([]Result, error) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("%s: rendered in %v", name, time.Since(start)) }()
	docs, err := Parse(name, data)
	if err != nil {
		return nil, err
	}
	return Render(alpha(t), DefaultOptions(), docs)
}

func generated() map[string]string {
	const hdr = "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: run}\nspec:\n  pipelineSpec:\n    tasks:\n"
	var flat, steps strings.Builder
	flat.WriteString(hdr)
	for i := 0; flat.Len() < 1500000; i++ {
		fmt.Fprintf(&flat, "    - name: t%d\n      taskSpec: {steps: [{name: s, image: busybox, command: ['true']}]}\n", i)
	}
	steps.WriteString(hdr + "    - name: t\n      taskSpec:\n        steps:\n")
	for i := 0; steps.Len() < 1500000; i++ {
		fmt.Fprintf(&steps, "        - {name: s%d, image: busybox, command: ['true']}\n", i)
	}
	amplify := hdr[:strings.Index(hdr, "  pipelineSpec")] +
		"  params: [{name: p, value: \"" + strings.Repeat("x", 100000) + "\"}]\n" +
		"  pipelineSpec:\n    params: [{name: p}]\n    tasks:\n    - name: t\n      taskSpec:\n        params: [{name: p}]\n" +
		"        steps: [{name: s, image: busybox, script: \"" + strings.Repeat("$(params.p)", 10000) + "\"}]\n"
	amplifyTask := "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: t}\nspec:\n  params: [{name: p}]\n" +
		"  steps: [{name: s, image: busybox, script: \"" + strings.Repeat("$(params.p)", 12000) + "\"}]\n---\n" +
		hdr[:strings.Index(hdr, "  pipelineSpec")] +
		"  params: [{name: p, value: \"" + strings.Repeat("y", 20000) + "\"}]\n" +
		"  pipelineSpec:\n    params: [{name: p}]\n    tasks:\n    - name: t\n      taskRef: {name: t}\n      params: [{name: p, value: $(params.p)}]\n"
	alias := "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: run}\na: &a [x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, k := range "bcdefghij" {
		alias += fmt.Sprintf("%c: &%c [%s]\n", k, k, strings.TrimSuffix(strings.Repeat("*"+prev+", ", 9), ", "))
		prev = string(k)
	}
	return map[string]string{
		"1.5 MiB of flat tasks":                    flat.String(),
		"1.5 MiB of steps in one task":             steps.String(),
		"a param referenced 10000 times":           amplify,
		"a Task referencing its param 12000 times": amplifyTask,
		"YAML alias bomb":                          alias,
	}
}

// Hostile and oversized inputs are refused quickly, with one error naming the
// document and the field.
func TestHostileInputsAreRefused(t *testing.T) {
	want := map[string]string{
		"cycle.yaml":                               `spec.pipelineSpec.tasks[0].pipelineSpec.tasks[0].pipelineRef: pipeline "a" → "b" → "a"`,
		"self-pipelineinpod.yaml":                  `spec.pipelineSpec.tasks[1].taskRef: pipeline "self" → "self"`,
		"tree16.yaml":                              "pipelines nest more than 10 levels deep",
		"matrix-wide.yaml":                         "spec.pipelineSpec.tasks: the run has more than 256 tasks",
		"matrix-from-param.yaml":                   "spec.pipelineSpec.tasks[m].matrix: 300 combinations",
		"long-run-name.yaml":                       "metadata.name: Invalid resource name: length must be no more than 63 characters",
		"1.5 MiB of flat tasks":                    "spec.pipelineSpec.tasks: the run has more than 256 tasks",
		"1.5 MiB of steps in one task":             "spec.pipelineSpec.tasks[t]: 25183 steps and sidecars, more than the 100",
		"a param referenced 10000 times":           "spec.params: substituting params would make about",
		"a Task referencing its param 12000 times": `pipeline task "t" (TaskRun run-t): spec.params: substituting params`,
		"YAML alias bomb":                          "excessive aliasing",
	}
	inputs := generated()
	files, _ := filepath.Glob(filepath.Join("testdata", "hostile", "*.yaml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[filepath.Base(f)] = string(b)
	}
	for name, data := range inputs {
		w, ok := want[name]
		if !ok {
			continue
		}
		delete(want, name)
		t.Run(name, func(t *testing.T) {
			results, err := renderBytes(t, name, []byte(data))
			if err == nil {
				if len(results) != 1 {
					t.Fatalf("%d results, want one", len(results))
				}
				err = results[0].Err
			}
			if err == nil {
				t.Fatal("rendered; want a refusal")
			}
			if !strings.HasPrefix(err.Error(), name+"#") || !strings.Contains(err.Error(), w) {
				t.Errorf("error %q, want the document and %q", OneLine(err), w)
			}
		})
	}
	for name := range want {
		t.Errorf("no input %s", name)
	}
}

// A task "pip" may name its steps like the pod's own containers, as Tekton allows:
// the user's containers are renamed, keep their step names, and every name is unique.
func TestReservedContainerNames(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "hostile", "reserved-names.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	results, err := renderBytes(t, "reserved-names.yaml", b)
	if err != nil || results[0].Err != nil {
		t.Fatal(err, results[0].Err)
	}
	out := results[0].Output
	names := sets.New[string]()
	for _, c := range append(append([]corev1.Container{}, out.Pod.Spec.InitContainers...), out.Pod.Spec.Containers...) {
		if names.Has(c.Name) {
			t.Errorf("two containers named %q", c.Name)
		}
		names.Insert(c.Name)
		if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
			t.Errorf("container name %q: %v", c.Name, errs)
		}
	}
	steps := map[string]string{}
	for _, c := range out.Pod.Spec.Containers {
		for i, a := range c.Args {
			if a == "-pip_step_name" && i+1 < len(c.Args) {
				steps[c.Args[i+1]] = c.Name
			}
		}
	}
	for _, s := range []string{"reporter", "init", "place-scripts"} {
		if steps[s] == "" || steps[s] == "step-pip-"+s {
			t.Errorf("step %q is in container %q; want a container of its own, not the pod's", s, steps[s])
		}
	}
	if got := out.Plan.Tasks[0].Steps; len(got) != 3 || got[0] != steps["reporter"] {
		t.Errorf("the plan's steps %v do not follow the renamed containers", got)
	}
}

// A panic in a stage becomes an error, "internal error", not a crash.
func TestPanicBecomesAnError(t *testing.T) {
	ctx := context.Background()
	cr := &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns"},
		Spec:       v1beta1.CustomRunSpec{CustomRef: &v1beta1.TaskRef{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind, Name: "p"}},
	}
	// A stage that panics on some input, as a bug would make it: reading the Pipeline.
	tekton := tektonfake.NewSimpleClientset()
	tekton.PrependReactor("get", "pipelines", func(k8stesting.Action) (bool, runtime.Object, error) {
		var p *v1.Pipeline
		return true, p, fmt.Errorf("%s", p.Name) // a nil dereference
	})
	stages := &prepare.Stages{KubeClient: k8sfake.NewSimpleClientset(), PipelineClient: tekton}
	_, err := renderRun(ctx, stages, cr)
	if err == nil || !strings.Contains(err.Error(), "internal error") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want one internal error", err)
	}
	if !strings.Contains(err.Error(), "hostile_test.go") {
		t.Errorf("err = %v, want the frame that panicked", err)
	}
}

// BenchmarkHostile measures how long each generated hostile input takes to be refused
// or rendered (docs: any input up to the API server's object size in under 1 s).
func BenchmarkHostile(b *testing.B) {
	ctx := alpha(b)
	for name, doc := range generated() {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				docs, err := Parse(name, []byte(doc))
				if err == nil {
					_, _ = Render(ctx, DefaultOptions(), docs)
				}
			}
		})
	}
}
