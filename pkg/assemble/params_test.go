package assemble_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pipelineinpod/pipelineinpod/pkg/render"
)

// The keys of an object param come, as Tekton merges them, from the run's value, the
// Task's default (the TaskRun's values merged over it) and the StepAction's default
// (the step's values merged over it). A Pipeline's default is not merged into a run's
// value, and an inline taskSpec gets the value of a pipeline param named as its own
// param substituted into it as is (Tekton's propagated params), before the Task's
// default could merge in.
func TestObjectParamKeysMerge(t *testing.T) {
	const stepAction = `apiVersion: tekton.dev/v1beta1
kind: StepAction
metadata: {name: sa}
spec:
  params:
  - name: sp
    type: object
    properties: {a: {type: string}, b: {type: string}, c: {type: string}, d: {type: string}}
    default: {a: sa-a, b: sa-b, c: sa-c, d: sa-d}
  image: busybox
  env:
  - {name: A, value: $(params.sp.a)}
  - {name: B, value: $(params.sp.b)}
  - {name: C, value: $(params.sp.c)}
  - {name: D, value: $(params.sp.d)}
  script: env
---
`
	const taskSpec = `
    params:
    - name: tp
      type: object
      properties: {a: {type: string}, b: {type: string}, c: {type: string}}
      default: {a: td-a, b: td-b, c: td-c}
    steps:
    - name: s
      ref: {name: sa}
      params: [{name: sp, value: "$(params.tp[*])"}]
`
	pipelineParam := func(name string) string {
		return `
    params:
    - name: ` + name + `
      type: object
      properties: {a: {type: string}, b: {type: string}}
      default: {a: pd-a, b: pd-b}
`
	}
	for _, tc := range []struct {
		name string
		doc  string
		want map[string]string
	}{{
		name: "PipelineRun, Pipeline, referenced Task, StepAction",
		doc: stepAction + `apiVersion: tekton.dev/v1
kind: Task
metadata: {name: t}
spec:` + taskSpec + `---
apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: p}
spec:
  params: [{name: pp, type: object, properties: {a: {type: string}, b: {type: string}}, default: {a: pd-a, b: pd-b}}]
  tasks:
  - {name: t, taskRef: {name: t}, params: [{name: tp, value: "$(params.pp[*])"}]}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineRef: {name: p}
  params: [{name: pp, value: {b: run-b}}]
`,
		want: map[string]string{"A": "td-a", "B": "run-b", "C": "td-c", "D": "sa-d"},
	}, {
		name: "a pipeline task that passes no value gets the Task's default",
		doc: stepAction + `apiVersion: tekton.dev/v1
kind: Task
metadata: {name: t}
spec:` + taskSpec + `---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks: [{name: t, taskRef: {name: t}}]
`,
		want: map[string]string{"A": "td-a", "B": "td-b", "C": "td-c", "D": "sa-d"},
	}, {
		name: "an inline taskSpec merges as a referenced Task does",
		doc: stepAction + `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  params: [{name: pp, value: {b: run-b}}]
  pipelineSpec:` + pipelineParam("pp") + `
    tasks:
    - name: t
      params: [{name: tp, value: "$(params.pp[*])"}]
      taskSpec:` + indent(taskSpec) + `
`,
		want: map[string]string{"A": "td-a", "B": "run-b", "C": "td-c", "D": "sa-d"},
	}, {
		name: "an inline taskSpec gets a pipeline param of its param's name propagated into it",
		doc: stepAction + `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  params: [{name: tp, value: {b: run-b}}]
  pipelineSpec:` + pipelineParam("tp") + `
    tasks:
    - name: t
      params: [{name: tp, value: "$(params.tp[*])"}]
      taskSpec:` + indent(taskSpec) + `
`,
		want: map[string]string{"A": "sa-a", "B": "run-b", "C": "sa-c", "D": "sa-d"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := render.Parse("doc.yaml", []byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			res, err := render.Render(context.Background(), render.DefaultOptions(), docs)
			if err != nil || len(res) != 1 || res[0].Err != nil {
				t.Fatal(err, res)
			}
			got := map[string]string{}
			for _, e := range container(t, res[0].Output.Pod, "step-t-s").Env {
				if len(e.Name) == 1 {
					got[e.Name] = e.Value
				}
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("the StepAction's env (-want +got):\n%s", d)
			}
		})
	}
}

// indent shifts a block of YAML two levels deeper.
func indent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "    " + l
		}
	}
	return strings.Join(lines, "\n")
}
