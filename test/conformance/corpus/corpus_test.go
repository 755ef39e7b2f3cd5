package corpus

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"sigs.k8s.io/yaml"
)

// Every example of the pinned module is marked, and every mark names an example.
func TestExpectationsCoverTheModule(t *testing.T) {
	dir, err := ExamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 100 {
		t.Fatalf("only %d examples under %s", len(files), dir)
	}
	list, err := Expectations()
	if err != nil {
		t.Fatal(err)
	}
	unlisted, stale := Coverage(files, list)
	for _, f := range unlisted {
		t.Errorf("%s: not marked in %s", f, ExpectationsFile)
	}
	for _, f := range stale {
		t.Errorf("%s marks %s, which the module does not have", ExpectationsFile, f)
	}
}

func TestParseExpectationsRefusesIncompleteEntries(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"examples: [{file: a.yaml, expect: refused}]", "cause: required"},
		{"examples: [{file: a.yaml, expect: skip, reason: x}]", "category"},
		{"examples: [{file: a.yaml, expect: skip, category: network}]", "reason: required"},
		{"examples: [{file: a.yaml, expect: maybe}]", "expect: \"maybe\""},
		{"examples: [{file: a.yaml, expect: pass}, {file: a.yaml, expect: pass}]", "listed twice"},
		{"examples: [{file: a.yaml, expect: pass, flags: {enable-api-fields: gamma}}]", "enable-api-fields"},
		{"examples: [{file: a.yaml, expect: pass, colour: red}]", "unknown field"},
	} {
		_, err := ParseExpectations("l.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
}

func TestFlagsMissing(t *testing.T) {
	e := Expectation{Flags: map[string]string{"enable-api-fields": "beta", "enable-param-enum": "true"}}
	defaults := map[string]string{"enable-api-fields": "beta"}
	if got := e.FlagsMissing(map[string]string{"enable-api-fields": "alpha", "enable-param-enum": "true"}, defaults); len(got) != 0 {
		t.Errorf("alpha and true satisfy beta and true, got %v", got)
	}
	got := e.FlagsMissing(map[string]string{"enable-api-fields": "stable"}, defaults)
	want := []string{`enable-api-fields=beta (is "stable")`, `enable-param-enum=true (is "")`}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

func TestLift(t *testing.T) {
	in := `apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
---
apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {generateName: echo-}
spec:
  serviceAccountName: builder
  timeout: 2h
  retries: 1
  params:
  - {name: s, value: hi}
  - {name: a, value: [x, z]}
  - {name: o, value: {k: v}}
  workspaces:
  - {name: w, emptyDir: {}}
  stepSpecs:
  - {name: s1, computeResources: {requests: {cpu: 10m}}}
  taskRef: {name: t, kind: task}
`
	out, err := Lift("in.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "---\n")
	if len(docs) != 3 || !strings.Contains(docs[1], "kind: ConfigMap") {
		t.Fatalf("want the ConfigMap kept, then the PipelineRun:\n%s", out)
	}
	var pr v1.PipelineRun
	if err := yaml.UnmarshalStrict([]byte(docs[2]), &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Kind != "PipelineRun" || pr.GenerateName != "echo-" {
		t.Errorf("kind %q generateName %q", pr.Kind, pr.GenerateName)
	}
	ps := pr.Spec.PipelineSpec
	if ps == nil || len(ps.Tasks) != 1 {
		t.Fatalf("want one pipeline task: %s", docs[2])
	}
	pt := ps.Tasks[0]
	if pt.Name != "echo" || pt.TaskRef.Kind != v1.NamespacedTaskKind || pt.Retries != 1 || pt.Timeout.Duration.Hours() != 2 {
		t.Errorf("pipeline task %+v", pt)
	}
	gotParams := map[string]string{}
	for _, p := range pt.Params {
		gotParams[p.Name] = p.Value.StringVal
	}
	if d := cmp.Diff(map[string]string{"s": "$(params.s)", "a": "$(params.a[*])", "o": "$(params.o[*])"}, gotParams); d != "" {
		t.Errorf("task params (-want +got)\n%s", d)
	}
	if len(ps.Params) != 3 || ps.Params[1].Type != v1.ParamTypeArray || ps.Params[2].Properties["k"].Type != v1.ParamTypeString {
		t.Errorf("pipeline params %+v", ps.Params)
	}
	if len(pt.Workspaces) != 1 || pt.Workspaces[0].Workspace != "w" || len(pr.Spec.Workspaces) != 1 || pr.Spec.Workspaces[0].EmptyDir == nil {
		t.Errorf("workspaces: task %+v run %+v", pt.Workspaces, pr.Spec.Workspaces)
	}
	if pr.Spec.TaskRunTemplate.ServiceAccountName != "builder" || pr.Spec.Timeouts.Pipeline.Duration.Hours() != 2 {
		t.Errorf("template %+v timeouts %+v", pr.Spec.TaskRunTemplate, pr.Spec.Timeouts)
	}
	if len(pr.Spec.TaskRunSpecs) != 1 || pr.Spec.TaskRunSpecs[0].PipelineTaskName != "echo" || len(pr.Spec.TaskRunSpecs[0].StepSpecs) != 1 {
		t.Errorf("taskRunSpecs %+v", pr.Spec.TaskRunSpecs)
	}
}

// An inline taskSpec gets the TaskRun's params as values, not through pipeline params
// that Tekton would propagate into the taskSpec before the Task's defaults merge in.
func TestLiftInlineTaskSpecParams(t *testing.T) {
	out, err := Lift("in.yaml", []byte(`apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: echo}
spec:
  params:
  - {name: s, value: hi}
  - {name: o, value: {k: v}}
  taskSpec:
    params: [{name: o, type: object, properties: {k: {}, j: {}}, default: {k: dk, j: dj}}]
    steps: [{name: s, image: busybox, script: "echo $(params.s) $(params.o.k) $(params.o.j)"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var pr v1.PipelineRun
	if err := yaml.UnmarshalStrict(bytes.TrimPrefix(out, []byte("---\n")), &pr); err != nil {
		t.Fatal(err)
	}
	want := v1.Params{{Name: "s", Value: *v1.NewStructuredValues("hi")}, {Name: "o", Value: *v1.NewObject(map[string]string{"k": "v"})}}
	if d := cmp.Diff(want, pr.Spec.PipelineSpec.Tasks[0].Params); d != "" {
		t.Errorf("task params (-want +got)\n%s", d)
	}
	if len(pr.Spec.Params) != 0 || len(pr.Spec.PipelineSpec.Params) != 0 {
		t.Errorf("run params %v, pipeline params %v; want none", pr.Spec.Params, pr.Spec.PipelineSpec.Params)
	}
}

func TestLiftRefusesATaskRunWithoutTask(t *testing.T) {
	_, err := Lift("in.yaml", []byte("apiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: x}\nspec: {}\n"))
	if err == nil || !strings.Contains(err.Error(), "in.yaml#0: TaskRun x: spec: exactly one of taskRef and taskSpec") {
		t.Errorf("got %v", err)
	}
}
