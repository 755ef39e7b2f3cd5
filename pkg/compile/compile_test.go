package compile_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile/compiletest"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

func compileDoc(t *testing.T, doc string) (*compile.Compiled, error) {
	t.Helper()
	r, err := compiletest.Compile(t, doc)
	if err != nil {
		return nil, err
	}
	return r.Compiled, nil
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
		name: "CEL when without its feature flag",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks: [{name: a, when: [{cel: "'a' == 'a'"}], taskSpec: ` + step("x") + `}]
`,
		want: "feature flag enable-cel-in-whenexpression should be set to true to use CEL: 'a' == 'a' in WhenExpression: tasks[0].when[0]",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileDoc(t, tc.doc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// The controller finds its TaskRuns by the labels compile gives them, so labels the
// Pipeline sets on a task (taskSpec.metadata, taskRunSpecs[].metadata) add to them but
// never replace them.
func TestUserLabelsDoNotReplaceOurs(t *testing.T) {
	c, err := compileDoc(t, `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  taskRunSpecs:
  - pipelineTaskName: a
    metadata: {labels: {tekton.dev/customRun: forged, team: blue}}
  pipelineSpec:
    tasks:
    - name: a
      taskSpec:
        metadata: {labels: {app.kubernetes.io/managed-by: someone-else, tier: build}}
        steps: [{name: s, image: busybox, script: "x"}]
`)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Tasks[0].TaskRun.Labels
	want := map[string]string{
		pipeline.CustomRunKey: "r", v1.ManagedByLabelKey: v1alpha1.ManagedBy, // ours win
		"team": "blue", "tier": "build", // the user's are kept
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("label %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

// Child TaskRuns inherit the run's labels and annotations as Tekton's PipelineRun
// reconciler gives its TaskRuns the PipelineRun's (precedence: taskRunSpecs' metadata
// over the run's over an inline taskSpec's, ours over all). Where an outer PipelineRun
// made the CustomRun, its identity moves off Tekton's keys onto ours.
func TestTaskRunMetadataPropagation(t *testing.T) {
	const tasks = `
    tasks:
    - name: a
      onError: continue
      taskSpec:
        metadata: {labels: {tier: build, team: from-spec}, annotations: {spec-note: s, shared: from-spec}}
        steps: [{name: s, image: busybox, script: "x"}]
`
	for _, tc := range []struct {
		name                      string
		doc                       string
		wantLabels, wantAnnotated map[string]string
	}{{
		name: "a PipelineRun file: its labels and annotations, but not Chains' nor kubectl's",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata:
  name: r
  labels: {team: blue, cost-center: "42"}
  annotations:
    note: kept
    shared: from-run
    chains.tekton.dev/signed: "true"
    kubectl.kubernetes.io/last-applied-configuration: "{}"
spec:
  taskRunSpecs:
  - pipelineTaskName: a
    metadata: {labels: {cost-center: "7"}, annotations: {shared: from-taskRunSpecs}}
  pipelineSpec:` + tasks,
		wantLabels: map[string]string{
			pipeline.CustomRunKey: "r", v1.ManagedByLabelKey: v1alpha1.ManagedBy,
			pipeline.PipelineLabelKey: "r", pipeline.PipelineTaskLabelKey: "a", pipeline.MemberOfLabelKey: "tasks",
			"team": "blue", "cost-center": "7", "tier": "build",
		},
		wantAnnotated: map[string]string{
			"note": "kept", "spec-note": "s", "shared": "from-taskRunSpecs",
			v1.PipelineTaskOnErrorAnnotation: string(v1.PipelineTaskContinue),
		},
	}, {
		name: "a CustomRun an outer PipelineRun made: the outer identity under our keys",
		doc: `apiVersion: tekton.dev/v1beta1
kind: CustomRun
metadata:
  name: outer-in-one-pod
  labels:
    tekton.dev/pipelineRun: outer
    tekton.dev/pipelineRunUID: outer-uid
    tekton.dev/pipeline: outer-pipeline
    tekton.dev/pipelineTask: in-one-pod
    tekton.dev/memberOf: tasks
    team: blue
  annotations: {from-outer: "yes"}
spec:
  customSpec:
    apiVersion: tekton.dev/v1alpha1
    kind: PipelineInPod
    spec:
      pipelineSpec:` + strings.ReplaceAll(tasks, "\n    ", "\n        "),
		wantLabels: map[string]string{
			pipeline.CustomRunKey: "outer-in-one-pod", v1.ManagedByLabelKey: v1alpha1.ManagedBy,
			pipeline.PipelineLabelKey: "outer-in-one-pod", pipeline.PipelineTaskLabelKey: "a", pipeline.MemberOfLabelKey: "tasks",
			compile.ParentPipelineRunLabel: "outer", compile.ParentPipelineRunUIDLabel: "outer-uid", compile.ParentPipelineTaskLabel: "in-one-pod",
			"team": "blue", "tier": "build",
		},
		wantAnnotated: map[string]string{
			"from-outer": "yes", "spec-note": "s", "shared": "from-spec",
			v1.PipelineTaskOnErrorAnnotation: string(v1.PipelineTaskContinue),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := compileDoc(t, tc.doc)
			if err != nil {
				t.Fatal(err)
			}
			tr := c.Tasks[0].TaskRun
			if d := cmp.Diff(tc.wantLabels, tr.Labels); d != "" {
				t.Errorf("labels (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantAnnotated, tr.Annotations); d != "" {
				t.Errorf("annotations (-want +got):\n%s", d)
			}
		})
	}
}

// A flattened child pipeline's tasks bind the run's workspaces through the pipeline task
// that names the child, as Tekton binds a child PipelineRun's: the child's workspace
// names map to the parent's, and every binding's subPath adds to the path.
func TestChildPipelineWorkspaces(t *testing.T) {
	c, err := compileDoc(t, `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: inner}
spec:
  workspaces: [{name: source}, {name: extra, optional: true}]
  tasks:
  - name: write
    workspaces: [{name: out, workspace: source, subPath: task}]
    taskSpec:
      workspaces: [{name: out}]
      steps: [{name: s, image: busybox, script: "echo > $(workspaces.out.path)/f"}]
  - name: loose
    taskSpec:
      steps: [{name: s, image: busybox, script: "ls $(workspaces.source.path)"}]
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  workspaces: [{name: scratch, emptyDir: {}, subPath: run}]
  pipelineSpec:
    workspaces: [{name: scratch}]
    tasks:
    - name: child
      taskRef: {apiVersion: tekton.dev/v1alpha1, kind: PipelineInPod, name: inner}
      workspaces: [{name: source, workspace: scratch, subPath: child}]
`)
	if err != nil {
		t.Fatal(err)
	}
	type binding struct{ TaskRun, Name, SubPath, Volume string }
	var got []binding
	for _, task := range c.Tasks {
		for _, w := range task.TaskRun.Spec.Workspaces {
			got = append(got, binding{task.TaskRun.Name, w.Name, w.SubPath, task.WorkspaceVolumes[w.Name]})
		}
	}
	vol := c.Workspaces[0].Volume
	want := []binding{
		{"r-child-loose", "source", "run/child", vol},
		{"r-child-write", "out", "run/child/task", vol},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("child tasks' workspace bindings (-want +got):\n%s", d)
	}
}
