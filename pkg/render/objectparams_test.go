package render

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
)

// tektonStepEnv is what Tekton makes of the one task of pr: its PipelineRun reconciler's
// checks and substitution (ValidateParamTypesMatching ... ApplyParameters, ApplyContexts,
// ValidateResolvedTask), then its TaskRun reconciler's (GetStepActionsData,
// ApplyParameters), called here directly: the env of the first step, or the error that
// fails the run.
func tektonStepEnv(t *testing.T, pr *v1.PipelineRun, task *v1.Task, sa *v1beta1.StepAction) (map[string]string, error) {
	t.Helper()
	ctx := context.Background()
	pr = pr.DeepCopy()
	pr.SetDefaults(ctx)
	ps := pr.Spec.PipelineSpec.DeepCopy()
	ps.SetDefaults(ctx)
	for _, err := range []error{
		prresources.ValidateParamTypesMatching(ps, pr),
		prresources.ValidateRequiredParametersProvided(&ps.Params, &pr.Spec.Params),
		prresources.ValidateObjectParamRequiredKeys(ps.Params, pr.Spec.Params),
	} {
		if err != nil {
			return nil, err
		}
	}
	ps, err := prresources.ApplyParameters(ps, pr)
	if err != nil {
		return nil, err
	}
	ps = prresources.ApplyContexts(ps, pr.Name, pr)
	pt := ps.Tasks[0]
	ts := task.Spec.DeepCopy()
	ts.SetDefaults(ctx)
	if err := taskrun.ValidateResolvedTask(ctx, pt.Params, pt.Matrix, &trresources.ResolvedTask{TaskName: task.Name, TaskSpec: ts}); err != nil {
		return nil, err
	}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: pr.Name + "-" + pt.Name, Namespace: pr.Namespace},
		Spec:       v1.TaskRunSpec{Params: pt.Params, TaskRef: pt.TaskRef},
	}
	steps, err := trresources.GetStepActionsData(ctx, *ts, tr, tektonfake.NewSimpleClientset(sa), k8sfake.NewSimpleClientset(), nil)
	if err != nil {
		return nil, err
	}
	ts.Steps = steps
	ts = trresources.ApplyParameters(ts, tr, ts.Params...)
	env := map[string]string{}
	for _, e := range ts.Steps[0].Env {
		env[e.Name] = e.Value
	}
	return env, nil
}

// An object param whose keys come from the run, the Pipeline's default, the Task's
// default and the StepAction's default ends up in the step as Tekton merges it (or the
// run fails as Tekton fails it): the rendered step's env is what Tekton's own functions
// make of the same documents.
func TestObjectParamMergeAsTekton(t *testing.T) {
	const stepAction = `apiVersion: tekton.dev/v1beta1
kind: StepAction
metadata: {name: sa, namespace: default}
spec:
  image: busybox
  command: ["true"]
  params:
  - name: obj
    properties: {a: {}, b: {}, c: {}, d: {}}
    default: {b: sa-b, d: sa-d}
  env:
  - {name: A, value: $(params.obj.a)}
  - {name: B, value: $(params.obj.b)}
  - {name: C, value: $(params.obj.c)}
  - {name: D, value: $(params.obj.d)}
`
	const task = `apiVersion: tekton.dev/v1
kind: Task
metadata: {name: tk, namespace: default}
spec:
  params:
  - name: obj
    properties: {%s}
    default: {c: task-c}
  steps:
  - name: s
    ref: {name: sa}
    params: [{name: obj, value: "$(params.obj[*])"}]
`
	const run = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r, namespace: default}
spec:
  params: [%s]
  pipelineSpec:
    params:
    - name: obj
      %s
    tasks:
    - name: t
      taskRef: {name: tk}
      params: [{name: obj, value: %s}]
`
	for _, tc := range []struct {
		name string
		// taskProps: the Task's declared keys; runParams, pipelineParam and ptValue:
		// the run's params, the Pipeline's declaration of obj, the pipeline task's value.
		taskProps, runParams, pipelineParam, ptValue string
		// want is the env Tekton gives the step (checked against Tekton's functions
		// too), wantErr a part of the error that fails the run.
		want    map[string]string
		wantErr string
	}{{
		name:      "run gives a, Task's default c, StepAction's default b and d",
		taskProps: "a: {}, c: {}", runParams: "{name: obj, value: {a: run-a}}",
		pipelineParam: "properties: {a: {}}", ptValue: `"$(params.obj[*])"`,
		want: map[string]string{"A": "run-a", "B": "sa-b", "C": "task-c", "D": "sa-d"},
	}, {
		name:      "Pipeline's default gives a and b, Task's default c, StepAction's default d",
		taskProps: "a: {}, c: {}", runParams: "",
		pipelineParam: "properties: {a: {}, b: {}}\n      default: {a: p-a, b: p-b}", ptValue: `"$(params.obj[*])"`,
		want: map[string]string{"A": "p-a", "B": "p-b", "C": "task-c", "D": "sa-d"},
	}, {
		name:      "run gives a, the pipeline task b, Task's default c, StepAction's default d",
		taskProps: "a: {}, b: {}, c: {}", runParams: "{name: obj, value: {a: run-a}}",
		pipelineParam: "properties: {a: {}}", ptValue: `{a: "$(params.obj.a)", b: pt-b}`,
		want: map[string]string{"A": "run-a", "B": "pt-b", "C": "task-c", "D": "sa-d"},
	}, {
		// The run's value replaces the Pipeline's default whole (ApplyParameters): b
		// never reaches the Task, which declares it, and Tekton fails the run.
		name:      "run gives a, Pipeline's default b is not merged",
		taskProps: "a: {}, b: {}, c: {}", runParams: "{name: obj, value: {a: run-a}}",
		pipelineParam: "properties: {a: {}, b: {}}\n      default: {b: p-b}", ptValue: `"$(params.obj[*])"`,
		wantErr: "missing keys for these params which are required in ParamSpec's properties map[obj:[b]]",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			text := stepAction + "---\n" + fmt.Sprintf(task, tc.taskProps) + "---\n" + fmt.Sprintf(run, tc.runParams, tc.pipelineParam, tc.ptValue)
			docs, err := Parse("doc.yaml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			var pr *v1.PipelineRun
			var tk *v1.Task
			var sa *v1beta1.StepAction
			for _, d := range docs {
				switch o := d.Object.(type) {
				case *v1.PipelineRun:
					pr = o
				case *v1.Task:
					tk = o
				case *v1beta1.StepAction:
					sa = o
				}
			}
			tekton, tektonErr := tektonStepEnv(t, pr, tk, sa)
			res, err := Render(context.Background(), DefaultOptions(), docs)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" {
				if tektonErr == nil || !strings.Contains(tektonErr.Error(), tc.wantErr) {
					t.Fatalf("Tekton: %v, want %q", tektonErr, tc.wantErr)
				}
				if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), tc.wantErr) {
					t.Fatalf("render: %v, want %q", res[0].Err, tc.wantErr)
				}
				return
			}
			if tektonErr != nil {
				t.Fatalf("Tekton: %v", tektonErr)
			}
			if res[0].Err != nil {
				t.Fatal(res[0].Err)
			}
			if d := cmp.Diff(tc.want, tekton); d != "" {
				t.Errorf("Tekton's env (-want +got):\n%s", d)
			}
			got := map[string]string{}
			for _, c := range res[0].Output.Pod.Spec.Containers {
				if c.Name != "step-t-s" {
					continue
				}
				for _, e := range c.Env {
					if len(e.Name) == 1 {
						got[e.Name] = e.Value
					}
				}
			}
			if d := cmp.Diff(tekton, got); d != "" {
				t.Errorf("rendered env differs from Tekton's (-tekton +render):\n%s", d)
			}
		})
	}
}
