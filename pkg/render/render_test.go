package render

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/test/names"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/test/conformance/corpus"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// moduleCorpus is Tekton's examples from the pinned module with their marks
// (test/conformance/corpus), skips left out.
func moduleCorpus(t *testing.T) (dir string, files []string, list map[string]corpus.Expectation) {
	t.Helper()
	dir, err := corpus.ExamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	all, err := corpus.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if list, err = corpus.Expectations(); err != nil {
		t.Fatal(err)
	}
	if unlisted, _ := corpus.Coverage(all, list); len(unlisted) > 0 {
		t.Fatalf("examples not marked in %s: %v", corpus.ExpectationsFile, unlisted)
	}
	for _, f := range all {
		if list[f].Expect != corpus.Skip {
			files = append(files, f)
		}
	}
	return dir, files, list
}

// withFlags carries Tekton's configuration with the feature-flags an example needs
// (Tekton's defaults for the rest), as a cluster set up for it would have.
func withFlags(t testing.TB, flags map[string]string) context.Context {
	t.Helper()
	cfg, err := v1alpha1.TektonConfig(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.GetFeatureFlagsConfigName()}, Data: flags})
	if err != nil {
		t.Fatal(err)
	}
	return config.ToContext(context.Background(), cfg)
}

// alpha is Tekton's configuration with alpha API fields (pipelines in pipelines are
// one): the hostile inputs nest Pipelines.
func alpha(t testing.TB) context.Context {
	return withFlags(t, map[string]string{"enable-api-fields": config.AlphaAPIFields})
}

func renderFile(t *testing.T, path string) []Result {
	t.Helper()
	docs, err := ReadFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Render(context.Background(), DefaultOptions(), docs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func renderCorpusFile(ctx context.Context, t *testing.T, dir, file string) []Result {
	t.Helper()
	raw, err := corpus.Load(dir, file)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Parse(file, raw)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Render(ctx, DefaultOptions(), docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) == 0 {
		t.Fatal("no PipelineRun in file")
	}
	return res
}

// Every example marked pass renders every run into a pod; every example marked refused
// fails every run with an error naming the cause.
func TestModuleExamples(t *testing.T) {
	dir, files, list := moduleCorpus(t)
	for _, f := range files {
		e := list[f]
		t.Run(f, func(t *testing.T) {
			res := renderCorpusFile(withFlags(t, e.Flags), t, dir, f)
			for _, r := range res {
				switch {
				case e.Expect == corpus.Pass && r.Err != nil:
					t.Errorf("%s %s: %v", r.Run.Kind, r.Run.Name, r.Err)
				case e.Expect == corpus.Pass:
					checkPod(t, r)
				case r.Err == nil:
					t.Errorf("%s %s rendered, but one pod cannot run it (%s)", r.Run.Kind, r.Run.Name, e.Reason)
				case !strings.Contains(r.Err.Error(), e.Cause):
					t.Errorf("error %q does not name the cause %q", r.Err, e.Cause)
				}
			}
		})
	}
}

// checkPod holds what every rendered pod must satisfy, whatever the pipeline.
func checkPod(t *testing.T, r Result) {
	t.Helper()
	p := r.Output.Pod
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			if !strings.HasPrefix(c.Name, "step-") {
				t.Errorf("container %q lacks the step- prefix (docs/design.md hazard 2)", c.Name)
			}
		}
	}
	pl, err := plan.Decode([]byte(p.Annotations[plan.AnnotationPlan]))
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Tasks) != len(r.Output.TaskRuns) {
		t.Errorf("plan has %d tasks, %d TaskRuns", len(pl.Tasks), len(r.Output.TaskRuns))
	}
	for _, tr := range r.Output.TaskRuns {
		if tr.Spec.Status != "TaskRunPending" {
			t.Errorf("TaskRun %s: spec.status %q, want TaskRunPending", tr.Name, tr.Spec.Status)
		}
		for _, l := range []string{"tekton.dev/customRun", "tekton.dev/pipelineTask", "tekton.dev/memberOf", "app.kubernetes.io/managed-by"} {
			if tr.Labels[l] == "" {
				t.Errorf("TaskRun %s: no label %s", tr.Name, l)
			}
		}
	}
}

func TestGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			names.TestingSeed()
			var got bytes.Buffer
			for _, r := range renderFile(t, f) {
				if r.Err != nil {
					fmt.Fprintf(&got, "# error: %s\n", OneLine(r.Err))
					continue
				}
				checkPod(t, r)
				if err := WriteYAML(&got, r.Output); err != nil {
					t.Fatal(err)
				}
			}
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/render -run TestGolden -update)", err)
			}
			if d := cmp.Diff(string(want), got.String()); d != "" {
				t.Errorf("render differs from %s (-want +got):\n%s", golden, d)
			}
		})
	}
}

func TestErrorsNameFieldAndReason(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{{
		name: "missing task",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks: [{name: a, taskRef: {name: nowhere}}]`,
		want: `spec.pipelineSpec.tasks[0].taskRef: resolving Task "nowhere"`,
	}, {
		name: "custom task inside",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks: [{name: a, taskRef: {apiVersion: example.dev/v1, kind: Wait, name: w}}]`,
		want: "custom task example.dev/v1/Wait cannot run inside one pod",
	}, {
		name: "service account per task",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  taskRunSpecs: [{pipelineTaskName: a, serviceAccountName: other}]
  pipelineSpec:
    tasks: [{name: a, taskSpec: {steps: [{name: s, image: busybox, command: ["true"]}]}}]`,
		want: `taskRunSpecs[0].serviceAccountName: "other" differs`,
	}, {
		name: "no command",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks: [{name: a, taskSpec: {steps: [{name: s, image: busybox, args: ["x"]}]}}]`,
		want: "spec.steps[0] (s): no command or script",
	}, {
		name: "missing param",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    params: [{name: p}]
    tasks: [{name: a, taskSpec: {steps: [{name: s, image: busybox, command: ["true"]}]}}]`,
		want: "spec.params:",
	}, {
		name: "missing task param",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks: [{name: a, taskSpec: {params: [{name: p}], steps: [{name: s, image: busybox, command: ["true"]}]}}]`,
		want: "spec.pipelineSpec.tasks[a].params: invalid input params for task : missing values for these params which have no default values: [p]",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := Parse("doc.yaml", []byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Render(context.Background(), DefaultOptions(), docs)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 || res[0].Err == nil {
				t.Fatalf("want one failed run, got %+v", res)
			}
			msg := OneLine(res[0].Err)
			if !strings.HasPrefix(msg, "doc.yaml#0: PipelineRun r: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q: want the document, then %q", msg, tc.want)
			}
		})
	}
}

// BenchmarkRender200Tasks renders a pipeline of 200 tasks in layers of 20 (each task
// waits for the whole layer before it) and reports the pod's size.
func BenchmarkRender200Tasks(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: big}\nspec:\n  pipelineSpec:\n    tasks:\n")
	for i := range 200 {
		fmt.Fprintf(&sb, "    - name: t%d\n", i)
		if i >= 20 {
			sb.WriteString("      runAfter: [")
			for j := (i/20 - 1) * 20; j < (i/20)*20; j++ {
				if j > (i/20-1)*20 {
					sb.WriteString(", ")
				}
				fmt.Fprintf(&sb, "t%d", j)
			}
			sb.WriteString("]\n")
		}
		fmt.Fprintf(&sb, "      taskSpec: {results: [{name: r}], steps: [{name: s, image: mirror.gcr.io/busybox, script: 'echo -n %d > $(results.r.path)'}]}\n", i)
	}
	docs, err := Parse("big.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	var size int
	b.ResetTimer()
	for range b.N {
		res, err := Render(context.Background(), DefaultOptions(), docs)
		if err != nil || res[0].Err != nil {
			b.Fatal(err, res[0].Err)
		}
		raw, err := json.Marshal(res[0].Output.Pod)
		if err != nil {
			b.Fatal(err)
		}
		size = len(raw)
	}
	b.ReportMetric(float64(size), "pod-bytes")
}

// The examples render together; the outer PipelineRun's PipelineInPod task becomes a
// pipeline in the pipeline, and its result reference follows the flattened task.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	docs, err := ReadFiles(files...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Render(context.Background(), DefaultOptions(), docs)
	if err != nil {
		t.Fatal(err)
	}
	// pipelinerun.yaml, customrun.yaml, restricted-namespace.yaml.
	if len(res) != 3 {
		t.Fatalf("want 3 runs, got %d", len(res))
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		checkPod(t, r)
		for _, tr := range r.Output.TaskRuns {
			if tr.Labels["tekton.dev/pipelineTask"] != "after" {
				continue
			}
			got := tr.Spec.Params[0].Value.StringVal
			if want := "$(tasks.in-one-pod-report.results.summary)"; got != want {
				t.Errorf("after's param = %q, want %q", got, want)
			}
		}
	}
}

// A pipeline whose one pod would exceed what the API server stores fails at build,
// naming the reason, instead of failing at pod creation (docs/design.md hazard 7).
func TestPodTooLarge(t *testing.T) {
	script := strings.Repeat("echo 0123456789abcdef0123456789abcdef\n", 45000) // ~1.6 MB
	doc := fmt.Sprintf(`apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: huge}
spec:
  pipelineSpec:
    tasks:
    - name: a
      taskSpec:
        steps:
        - name: s
          image: busybox
          script: %q
`, script)
	docs, err := Parse("huge.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Render(context.Background(), DefaultOptions(), docs)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "over the") || !strings.Contains(res[0].Err.Error(), "API server can store") {
		t.Errorf("want a pod-size error, got %v", res[0].Err)
	}
}
