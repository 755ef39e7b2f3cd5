package compile_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile/compiletest"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

var celOn = map[string]string{"enable-cel-in-whenexpression": "true"}

// outcome is what a compile gives that the tests below compare: the plan tasks, or the
// error's reason (Tekton's PipelineRun reason, "" for a validation failure) and text.
type outcome struct {
	Tasks  []plan.Task
	Reason string
	Err    string
}

func compileOutcome(t *testing.T, flags map[string]string, doc string) outcome {
	t.Helper()
	r, err := compiletest.CompileWith(compiletest.WithFlags(t, flags), t, doc)
	if err != nil {
		var re *compile.ReasonError
		if errors.As(err, &re) {
			return outcome{Reason: re.Reason, Err: err.Error()}
		}
		return outcome{Err: err.Error()}
	}
	var o outcome
	for _, task := range r.Compiled.Tasks {
		o.Tasks = append(o.Tasks, task.Task)
	}
	return o
}

// errContains lets a want name the part of an error message that matters.
var errContains = cmp.Comparer(func(a, b string) bool {
	return a == b || (a != "" && b != "" && (strings.Contains(a, b) || strings.Contains(b, a)))
})

// CEL when expressions follow Tekton: allowed only with enable-cel-in-whenexpression,
// params and contexts substituted before the run, every expression evaluated once then
// (a run fails at once with CELEvaluationFailed if one cannot be), and the references to
// results and statuses left for the pod, where the task waits for the tasks they name.
func TestCELWhen(t *testing.T) {
	const run = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  params: [{name: path, value: README.md}]
  pipelineSpec:
    params: [{name: path}]
    tasks:
    - {name: a, taskSpec: {results: [{name: out}], steps: [{name: s, image: busybox, script: "x"}]}}
`
	for _, tc := range []struct {
		name  string
		flags map[string]string
		tasks string
		want  outcome
	}{{
		name:  "a param is substituted, a result reference waits for its task",
		flags: celOn,
		tasks: `    - name: b
      when:
      - cel: "'$(params.path)' == 'README.md'"
      - cel: "'$(tasks.a.results.out)' == 'yes'"
      taskSpec: {steps: [{name: s, image: busybox, script: "x"}]}
    finally:
    - name: f
      when: [{cel: "'$(tasks.status)' == 'Succeeded' && '$(tasks.b.status)' != 'Failed'"}]
      taskSpec: {steps: [{name: s, image: busybox, script: "x"}]}
`,
		want: outcome{Tasks: []plan.Task{
			{Key: "a", PipelineTask: "a", TaskRun: "r-a", Results: []plan.Result{{Name: "out", Type: v1.ResultsTypeString}}},
			{Key: "b", PipelineTask: "b", TaskRun: "r-b", RunAfter: []string{"a"}, ResultsFrom: []string{"a"},
				When: v1.WhenExpressions{{CEL: "'README.md' == 'README.md'"}, {CEL: "'$(tasks.a.results.out)' == 'yes'"}}},
			{Key: "f", PipelineTask: "f", TaskRun: "r-f", Finally: true, RunAfter: []string{"a", "b"},
				When: v1.WhenExpressions{{CEL: "'$(tasks.status)' == 'Succeeded' && '$(tasks.b.status)' != 'Failed'"}}},
		}},
	}, {
		name:  "without the feature flag Tekton's validation refuses CEL",
		tasks: `    - {name: b, when: [{cel: "'a' == 'a'"}], taskSpec: {steps: [{name: s, image: busybox, script: "x"}]}}` + "\n",
		want:  outcome{Err: "feature flag enable-cel-in-whenexpression should be set to true"},
	}, {
		name:  "an expression that is not a boolean fails the run before it starts",
		flags: celOn,
		tasks: `    - {name: b, when: [{cel: "'$(params.path)' + '.bak'"}], taskSpec: {steps: [{name: s, image: busybox, script: "x"}]}}` + "\n",
		want: outcome{Reason: "CELEvaluationFailed",
			Err: "spec.pipelineSpec.tasks[b].when: error evaluating CEL: The CEL expression 'README.md' + '.bak' is not evaluated to a boolean"},
	}, {
		name:  "an expression that fails to evaluate fails the run before it starts",
		flags: celOn,
		tasks: `    - {name: b, when: [{cel: "1 / 0 == 1"}], taskSpec: {steps: [{name: s, image: busybox, script: "x"}]}}` + "\n",
		want:  outcome{Reason: "CELEvaluationFailed", Err: "spec.pipelineSpec.tasks[b].when: error evaluating CEL: division by zero"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := compileOutcome(t, tc.flags, run+tc.tasks)
			if d := cmp.Diff(tc.want, got, errContains); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// $(tasks.<t>.matrix.length) is the number of instances of t, known once params are
// substituted; $(tasks.<t>.matrix.<result>.length) counts results, so it stays for the
// pod to substitute when the consumer starts.
func TestMatrixContextVariables(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		// want holds the params of the consumer's TaskRun.
		want v1.Params
	}{{
		name: "a matrix over an array param and one of includes",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  params: [{name: platforms, value: [linux, mac, windows, plan9]}]
  pipelineSpec:
    params: [{name: platforms, type: array}]
    tasks:
    - name: m
      matrix: {params: [{name: p, value: $(params.platforms)}]}
      taskSpec: {params: [{name: p}], results: [{name: r}], steps: [{name: s, image: busybox, script: "x"}]}
    - name: i
      matrix: {include: [{name: one, params: [{name: p, value: a}]}, {name: two, params: [{name: p, value: b}]}]}
      taskSpec: {params: [{name: p}], steps: [{name: s, image: busybox, script: "x"}]}
    - name: consumer
      runAfter: [m, i]
      params:
      - {name: m, value: $(tasks.m.matrix.length)}
      - {name: i, value: "$(tasks.i.matrix.length) instances"}
      - {name: r, value: $(tasks.m.matrix.r.length)}
      taskSpec: {params: [{name: m}, {name: i}, {name: r}], steps: [{name: s, image: busybox, script: "x"}]}
`,
		want: v1.Params{
			{Name: "m", Value: *v1.NewStructuredValues("4")},
			{Name: "i", Value: *v1.NewStructuredValues("2 instances")},
			{Name: "r", Value: *v1.NewStructuredValues("$(tasks.m.matrix.r.length)")},
		},
	}, {
		name: "inside a pipeline in the pipeline, whose tasks get the child's prefix",
		doc: `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: inner}
spec:
  params: [{name: xs, type: array}]
  tasks:
  - name: m
    matrix: {params: [{name: p, value: $(params.xs)}]}
    taskSpec: {params: [{name: p}], results: [{name: r}], steps: [{name: s, image: busybox, script: "x"}]}
  - name: consumer
    runAfter: [m]
    params: [{name: count, value: $(tasks.m.matrix.length)}, {name: r, value: $(tasks.m.matrix.r.length)}]
    taskSpec: {params: [{name: count}, {name: r}], steps: [{name: s, image: busybox, script: "x"}]}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - name: child
      params: [{name: xs, value: [a, b, c]}]
      taskRef: {apiVersion: tekton.dev/v1alpha1, kind: PipelineInPod, name: inner}
`,
		want: v1.Params{
			{Name: "count", Value: *v1.NewStructuredValues("3")},
			{Name: "r", Value: *v1.NewStructuredValues("$(tasks.child-m.matrix.r.length)")},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := compileDoc(t, tc.doc)
			if err != nil {
				t.Fatal(err)
			}
			var got v1.Params
			for _, task := range c.Tasks {
				if strings.HasSuffix(task.PipelineTask, "consumer") {
					got = task.TaskRun.Spec.Params
				}
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("consumer params (-want +got):\n%s", d)
			}
		})
	}
}

// A matrix value that YAML reads as booleans or numbers is no list of strings: Tekton
// takes it as a string and fails the run (InvalidMatrixParameterTypes) when it schedules
// the task. It must not fan out into nothing and skip the task.
func TestMatrixOfNonStrings(t *testing.T) {
	for _, value := range []string{"[true, false]", "[on, off]", "[1, 2]", "[a, yes]"} {
		t.Run(value, func(t *testing.T) {
			got := compileOutcome(t, nil, `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - name: m
      matrix: {params: [{name: flag, value: `+value+`}]}
      taskSpec: {params: [{name: flag}], steps: [{name: s, image: busybox, script: "echo $(params.flag)"}]}
`)
			want := outcome{Reason: "InvalidMatrixParameterTypes",
				Err: `spec.pipelineSpec.tasks[m].matrix: parameters of type array only are allowed, but param "flag" has type "string" in pipelineTask "m"`}
			if d := cmp.Diff(want, got, errContains); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// $(tasks.status) in a finally task aggregates its own pipeline's DAG: a flattened child
// pipeline's finally only the child's tasks; the parent's finally its own tasks, and a
// child with all of its tasks, its finally ones included, as one pipeline task.
func TestTasksStatusScope(t *testing.T) {
	got := compileOutcome(t, nil, `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: inner}
spec:
  tasks:
  - {name: c1, taskSpec: {steps: [{name: s, image: busybox, script: "x"}]}}
  finally:
  - name: cf
    params: [{name: st, value: $(tasks.status)}]
    taskSpec: {params: [{name: st}], steps: [{name: s, image: busybox, script: "echo $(params.st)"}]}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - {name: t1, taskSpec: {steps: [{name: s, image: busybox, script: "x"}]}}
    - {name: child, taskRef: {apiVersion: tekton.dev/v1alpha1, kind: PipelineInPod, name: inner}}
    finally:
    - name: f
      params: [{name: st, value: $(tasks.status)}]
      taskSpec: {params: [{name: st}], steps: [{name: s, image: busybox, script: "echo $(params.st)"}]}
`)
	want := outcome{Tasks: []plan.Task{
		{Key: "child-c1", PipelineTask: "child-c1", TaskRun: "r-child-c1"},
		{Key: "child-cf", PipelineTask: "child-cf", TaskRun: "r-child-cf", Finally: true, RunAfter: []string{"child-c1"},
			TasksStatus: &plan.TasksStatusScope{Tasks: []string{"child-c1"}}},
		{Key: "t1", PipelineTask: "t1", TaskRun: "r-t1"},
		{Key: "f", PipelineTask: "f", TaskRun: "r-f", Finally: true, RunAfter: []string{"child-c1", "child-cf", "t1"},
			TasksStatus: &plan.TasksStatusScope{Tasks: []string{"t1"}, Children: []string{"child-c1", "child-cf"}}},
	}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}

	// Without a child pipeline, every DAG task is what $(tasks.status) covers: the plan
	// says nothing more.
	got = compileOutcome(t, nil, `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks: [{name: t1, taskSpec: {steps: [{name: s, image: busybox, script: "x"}]}}]
    finally:
    - {name: f, when: [{input: $(tasks.status), operator: in, values: [Succeeded]}], taskSpec: {steps: [{name: s, image: busybox, script: "x"}]}}
`)
	if f := got.Tasks[len(got.Tasks)-1]; f.TasksStatus != nil {
		t.Errorf("finally f: TasksStatus %+v, want none", f.TasksStatus)
	}
}
