package compile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/render"
	"github.com/pipelineinpod/pipelineinpod/pkg/resolve"
)

func compileDoc(t *testing.T, doc string) (*compile.Compiled, error) {
	t.Helper()
	ctx, err := v1alpha1.WithTektonConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	docs, err := render.Parse("doc.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := render.Runs(docs)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %v %v", runs, err)
	}
	cr := runs[0].CustomRun
	var objs []runtime.Object
	for _, d := range docs {
		if p, ok := d.Object.(*v1.Pipeline); ok {
			p.Namespace = cr.Namespace
			objs = append(objs, p)
		}
	}
	r := resolve.NewClientResolver(k8sfake.NewSimpleClientset(), tektonfake.NewSimpleClientset(objs...), nil, cr)
	resolved, err := resolve.Resolve(ctx, r, cr)
	if err != nil {
		return nil, err
	}
	return compile.Compile(ctx, cr, resolved)
}

func step(script string) string {
	return `{steps: [{name: s, image: busybox, script: "` + script + `"}]}`
}

// The schedule of a Pipeline: which tasks wait for which, whose results they need, and
// what is left for the pod to decide at run time.
func TestSchedule(t *testing.T) {
	minute := &metav1.Duration{Duration: time.Minute}
	for _, tc := range []struct {
		name string
		doc  string
		want []plan.Task
		skip []compile.Skipped
	}{{
		name: "runAfter and result references make the DAG; finally waits for all",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - {name: a, taskSpec: {results: [{name: out}], steps: [{name: s, image: busybox, script: "x"}]}}
    - {name: b, runAfter: [a], timeout: 1m, onError: continue, taskSpec: ` + step("x") + `}
    - name: c
      retries: 2
      params: [{name: p, value: "$(tasks.a.results.out)"}]
      when: [{input: "$(tasks.a.results.out)", operator: in, values: ["yes"]}]
      taskSpec: {params: [{name: p}], steps: [{name: s, image: busybox, script: "echo $(params.p)"}]}
    finally:
    - {name: f, taskSpec: ` + step("x") + `}
`,
		want: []plan.Task{
			{Key: "a", PipelineTask: "a", TaskRun: "r-a", Results: []plan.Result{{Name: "out", Type: v1.ResultsTypeString}}},
			{Key: "b", PipelineTask: "b", TaskRun: "r-b", RunAfter: []string{"a"}, Timeout: minute, OnError: v1.PipelineTaskContinue},
			{Key: "c", PipelineTask: "c", TaskRun: "r-c", RunAfter: []string{"a"}, ResultsFrom: []string{"a"}, Retries: 2,
				When: v1.WhenExpressions{{Input: "$(tasks.a.results.out)", Operator: selection.In, Values: []string{"yes"}}}},
			{Key: "f", PipelineTask: "f", TaskRun: "r-f", Finally: true, RunAfter: []string{"a", "b", "c"}},
		},
	}, {
		name: "a matrix fans out into instances; an empty one is skipped before the run",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - name: m
      matrix: {params: [{name: x, value: [one, two]}]}
      taskSpec: {params: [{name: x}], steps: [{name: s, image: busybox, script: "echo $(params.x)"}]}
    - name: empty
      matrix: {params: [{name: x, value: []}]}
      taskSpec: {params: [{name: x}], steps: [{name: s, image: busybox, script: "x"}]}
    - {name: after, runAfter: [m], taskSpec: ` + step("x") + `}
`,
		want: []plan.Task{
			{Key: "m-0", PipelineTask: "m", TaskRun: "r-m-0"},
			{Key: "m-1", PipelineTask: "m", TaskRun: "r-m-1"},
			{Key: "after", PipelineTask: "after", TaskRun: "r-after", RunAfter: []string{"m-0", "m-1"}},
		},
		skip: []compile.Skipped{{PipelineTask: "empty", Reason: v1.EmptyArrayInMatrixParams}},
	}, {
		name: "a nested PipelineInPod task joins the pod under its task's name",
		doc: `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: inner-pipeline}
spec:
  results: [{name: r, value: "$(tasks.inner.results.v)"}]
  tasks:
  - {name: inner, taskSpec: {results: [{name: v}], steps: [{name: s, image: busybox, script: "x"}]}}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - {name: first, taskSpec: ` + step("x") + `}
    - name: child
      runAfter: [first]
      taskRef: {apiVersion: tekton.dev/v1alpha1, kind: PipelineInPod, name: inner-pipeline}
    - name: last
      params: [{name: p, value: "$(tasks.child.results.r)"}]
      taskSpec: {params: [{name: p}], steps: [{name: s, image: busybox, script: "echo $(params.p)"}]}
`,
		want: []plan.Task{
			{Key: "first", PipelineTask: "first", TaskRun: "r-first"},
			{Key: "child-inner", PipelineTask: "child-inner", TaskRun: "r-child-inner", RunAfter: []string{"first"}, Results: []plan.Result{{Name: "v", Type: v1.ResultsTypeString}}},
			{Key: "last", PipelineTask: "last", TaskRun: "r-last", RunAfter: []string{"child-inner"}, ResultsFrom: []string{"child-inner"}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := compileDoc(t, tc.doc)
			if err != nil {
				t.Fatal(err)
			}
			var got []plan.Task
			for _, task := range c.Tasks {
				got = append(got, task.Task)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("plan tasks (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.skip, c.Skipped); d != "" {
				t.Errorf("skipped (-want +got):\n%s", d)
			}
		})
	}
}

// What one pod cannot honour fails at once, naming the field and the reason.
func TestRefused(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{{
		name: "matrix from a result",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - {name: a, taskSpec: {results: [{name: list, type: array}], steps: [{name: s, image: busybox, script: "x"}]}}
    - name: b
      matrix: {params: [{name: x, value: "$(tasks.a.results.list[*])"}]}
      taskSpec: {params: [{name: x}], steps: [{name: s, image: busybox, script: "x"}]}
`,
		want: `spec.pipelineSpec.tasks[b].matrix.params[0] (x): the matrix fans out over a result of task "a"`,
	}, {
		name: "a pod template per task",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  taskRunSpecs: [{pipelineTaskName: a, podTemplate: {nodeSelector: {disk: ssd}}}]
  pipelineSpec:
    tasks: [{name: a, taskSpec: ` + step("x") + `}]
`,
		want: `spec.customSpec.spec.taskRunSpecs[0].podTemplate: task "a" asks for a pod template of its own`,
	}, {
		name: "CEL when",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks: [{name: a, when: [{cel: "'a' == 'a'"}], taskSpec: ` + step("x") + `}]
`,
		want: "when[0]",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileDoc(t, tc.doc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
