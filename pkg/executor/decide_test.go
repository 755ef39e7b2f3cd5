package executor

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

func st(key string, phase plan.Phase, reason string, results ...v1.TaskRunResult) *plan.TaskState {
	return &plan.TaskState{Key: key, Phase: phase, Reason: reason, Results: results}
}

func strResult(name, val string) v1.TaskRunResult {
	return v1.TaskRunResult{Name: name, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(val)}
}

func TestDecide(t *testing.T) {
	start := time.Unix(1000, 0)
	minute := &metav1.Duration{Duration: time.Minute}
	whenIn := func(input string, values ...string) v1.WhenExpressions {
		return v1.WhenExpressions{{Input: input, Operator: selection.In, Values: values}}
	}
	succeededA := st("a", plan.PhaseSucceeded, "Succeeded", strResult("r", "yes"))
	for _, tc := range []struct {
		name   string
		plan   plan.Plan
		task   plan.Task
		states map[string]*plan.TaskState
		now    time.Time
		cancel bool
		want   decision
	}{{
		name:   "parents succeeded",
		task:   plan.Task{Key: "b", RunAfter: []string{"a"}},
		states: map[string]*plan.TaskState{"a": succeededA},
	}, {
		name:   "another DAG task failed",
		task:   plan.Task{Key: "c", RunAfter: []string{"a"}},
		states: map[string]*plan.TaskState{"a": succeededA, "x": st("x", plan.PhaseFailed, "Failed")},
		want:   decision{skip: v1.StoppingSkip},
	}, {
		name:   "a failure ignored by onError continue does not stop the run",
		task:   plan.Task{Key: "c", RunAfter: []string{"a"}},
		states: map[string]*plan.TaskState{"a": succeededA, "x": st("x", plan.PhaseFailed, "FailureIgnored")},
	}, {
		name:   "a root task runs even if a sibling already failed",
		task:   plan.Task{Key: "c"},
		states: map[string]*plan.TaskState{"x": st("x", plan.PhaseFailed, "Failed")},
	}, {
		name:   "when on a result is false",
		task:   plan.Task{Key: "b", RunAfter: []string{"a"}, ResultsFrom: []string{"a"}, When: whenIn("$(tasks.a.results.r)", "no")},
		states: map[string]*plan.TaskState{"a": succeededA},
		want:   decision{skip: v1.WhenExpressionsSkip},
	}, {
		name:   "when with a CEL expression",
		task:   plan.Task{Key: "b", RunAfter: []string{"a"}, When: v1.WhenExpressions{{CEL: "'$(tasks.a.results.r)' == 'yes'"}}},
		states: map[string]*plan.TaskState{"a": succeededA},
	}, {
		name:   "a CEL expression false once the result is substituted",
		task:   plan.Task{Key: "b", RunAfter: []string{"a"}, ResultsFrom: []string{"a"}, When: v1.WhenExpressions{{CEL: "'$(tasks.a.results.r)' != 'yes'"}}},
		states: map[string]*plan.TaskState{"a": succeededA},
		want:   decision{skip: v1.WhenExpressionsSkip},
	}, {
		name:   "a CEL expression that cannot be evaluated once substituted fails the task",
		task:   plan.Task{Key: "b", PipelineTask: "b", RunAfter: []string{"a"}, ResultsFrom: []string{"a"}, When: v1.WhenExpressions{{CEL: "'$(tasks.a.results.r)' == 'x'"}}},
		states: map[string]*plan.TaskState{"a": st("a", plan.PhaseSucceeded, "Succeeded", strResult("r", "it's"))},
		want: decision{failReason: "CELEvaluationFailed",
			failMessage: "when expressions of \"b\": error evaluating CEL: ERROR: <input>:1:5: Syntax error: mismatched input 's' expecting <EOF>\n | 'it's' == 'x'\n | ....^\nERROR: <input>:1:13: Syntax error: token recognition error at: '''\n | 'it's' == 'x'\n | ............^"},
	}, {
		name:   "a CEL expression of a finally task that cannot be evaluated fails it",
		task:   plan.Task{Key: "f", PipelineTask: "f", Finally: true, RunAfter: []string{"a"}, ResultsFrom: []string{"a"}, When: v1.WhenExpressions{{CEL: "'$(tasks.a.results.r)' == 'x'"}}},
		states: map[string]*plan.TaskState{"a": st("a", plan.PhaseSucceeded, "Succeeded", strResult("r", "it's")), "x": succeededA},
		want: decision{failReason: "CELEvaluationFailed",
			failMessage: "when expressions of \"f\": error evaluating CEL: ERROR: <input>:1:5: Syntax error: mismatched input 's' expecting <EOF>\n | 'it's' == 'x'\n | ....^\nERROR: <input>:1:13: Syntax error: token recognition error at: '''\n | 'it's' == 'x'\n | ............^"},
	}, {
		name:   "a finally task's CEL on a result never produced skips it",
		task:   plan.Task{Key: "f", Finally: true, RunAfter: []string{"a"}, ResultsFrom: []string{"a"}, When: v1.WhenExpressions{{CEL: "'$(tasks.a.results.nope)' > 2"}}},
		states: map[string]*plan.TaskState{"a": succeededA, "x": succeededA},
		want:   decision{skip: v1.MissingResultsSkip},
	}, {
		name:   "a when-skipped parent does not cascade",
		task:   plan.Task{Key: "b", RunAfter: []string{"a"}},
		states: map[string]*plan.TaskState{"a": st("a", plan.PhaseSkipped, string(v1.WhenExpressionsSkip))},
	}, {
		name:   "a parent skipped otherwise cascades",
		task:   plan.Task{Key: "b", RunAfter: []string{"a"}},
		states: map[string]*plan.TaskState{"a": st("a", plan.PhaseSkipped, string(v1.MissingResultsSkip))},
		want:   decision{skip: v1.ParentTasksSkip},
	}, {
		name:   "results of a when-skipped task are missing",
		task:   plan.Task{Key: "b", RunAfter: []string{"a"}, ResultsFrom: []string{"a"}, When: whenIn("$(tasks.a.results.r)", "yes")},
		states: map[string]*plan.TaskState{"a": st("a", plan.PhaseSkipped, string(v1.WhenExpressionsSkip))},
		want:   decision{skip: v1.MissingResultsSkip},
	}, {
		name:   "a succeeded producer without the result",
		task:   plan.Task{Key: "b", RunAfter: []string{"a"}, ResultsFrom: []string{"a"}, When: whenIn("$(tasks.a.results.nope)", "yes")},
		states: map[string]*plan.TaskState{"a": succeededA},
		want: decision{failReason: "InvalidTaskResultReference",
			failMessage: `when expressions of "": $(tasks.a.results.nope): no such result (the task did not produce it)`},
	}, {
		name:   "pipeline timeout passed",
		plan:   plan.Plan{PipelineTimeout: minute},
		task:   plan.Task{Key: "b"},
		now:    start.Add(2 * time.Minute),
		states: map[string]*plan.TaskState{},
		want:   decision{skip: v1.PipelineTimedOutSkip},
	}, {
		name:   "tasks timeout passed",
		plan:   plan.Plan{TasksTimeout: minute},
		task:   plan.Task{Key: "b"},
		now:    start.Add(2 * time.Minute),
		states: map[string]*plan.TaskState{},
		want:   decision{skip: v1.TasksTimedOutSkip},
	}, {
		name:   "tasks timeout does not skip finally",
		plan:   plan.Plan{TasksTimeout: minute},
		task:   plan.Task{Key: "f", Finally: true},
		now:    start.Add(2 * time.Minute),
		states: map[string]*plan.TaskState{},
	}, {
		name:   "finally runs after a failure",
		task:   plan.Task{Key: "f", Finally: true, RunAfter: []string{"a", "x"}, When: whenIn("$(tasks.status)", "Failed")},
		states: map[string]*plan.TaskState{"a": succeededA, "x": st("x", plan.PhaseFailed, "Failed")},
	}, {
		name:   "finally needing results of a failed task",
		task:   plan.Task{Key: "f", Finally: true, RunAfter: []string{"x"}, ResultsFrom: []string{"x"}},
		states: map[string]*plan.TaskState{"x": st("x", plan.PhaseFailed, "Failed")},
		want:   decision{skip: v1.MissingResultsSkip},
	}, {
		name:   "cancelled",
		task:   plan.Task{Key: "b", RunAfter: []string{"a"}},
		states: map[string]*plan.TaskState{"a": succeededA},
		cancel: true,
		want:   decision{skip: v1.StoppingSkip},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.plan
			p.Tasks = []plan.Task{{Key: "a", PipelineTask: "a"}, {Key: "x", PipelineTask: "x"}, tc.task}
			now := tc.now
			if now.IsZero() {
				now = start
			}
			got := decide(gateInput{plan: &p, task: &p.Tasks[2], states: tc.states, start: start, now: now, cancelled: tc.cancel})
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(decision{})); diff != "" {
				t.Errorf("decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValues(t *testing.T) {
	p := &plan.Plan{Tasks: []plan.Task{
		{Key: "a", PipelineTask: "a", Results: []plan.Result{{Name: "s"}, {Name: "t"}}},
		{Key: "m-0", PipelineTask: "m", Results: []plan.Result{{Name: "r"}}},
		{Key: "m-1", PipelineTask: "m", Results: []plan.Result{{Name: "r"}}},
		{Key: "s", PipelineTask: "s"},
		{Key: "f", PipelineTask: "f", Finally: true},
	}}
	states := map[string]*plan.TaskState{
		"a": st("a", plan.PhaseSucceeded, "Succeeded",
			v1.TaskRunResult{Name: "arr", Type: v1.ResultsTypeArray, Value: v1.ResultValue{Type: v1.ParamTypeArray, ArrayVal: []string{"1", "2"}}},
			v1.TaskRunResult{Name: "obj", Type: v1.ResultsTypeObject, Value: v1.ResultValue{Type: v1.ParamTypeObject, ObjectVal: map[string]string{"k": "v"}}},
			strResult("s", "str")),
		"m-0": st("m-0", plan.PhaseSucceeded, "Succeeded", strResult("r", "x")),
		"m-1": st("m-1", plan.PhaseFailed, "TaskRunTimeout"),
		"s":   st("s", plan.PhaseSkipped, string(v1.WhenExpressionsSkip)),
	}
	v := newValues(p, nil, states, 3)
	for _, tc := range []struct{ in, want string }{
		{"$(tasks.a.results.s)", "str"},
		{"$(tasks.a.results['s'])", "str"},
		{`$(tasks.a.results["s"])`, "str"},
		{"$(tasks.a.results.arr[1])", "2"},
		{"$(tasks.a.results.obj.k)", "v"},
		{"x $(tasks.a.results.arr[*])", `x ["1","2"]`},
		{"$(tasks.a.status)/$(tasks.a.reason)", "Succeeded/Succeeded"},
		{"$(tasks.m.status)/$(tasks.m.reason)", "Failed/TaskRunTimeout"},
		{"$(tasks.s.status)/$(tasks.s.reason)", "None/"},
		{"$(tasks.status)", "Failed"},
		{"$(context.task.retry-count)", "3"},
		{"$(params.untouched) $(date)", "$(params.untouched) $(date)"},
	} {
		got, err := v.string(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
		}
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.in, got, tc.want)
		}
	}
	args, err := v.args([]string{"$(tasks.a.results.arr[*])", "$(tasks.a.results.arr)", "-"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"1", "2", "1", "2", "-"}, args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	// $(tasks.<t>.matrix.<result>.length) counts the runs that produced the result,
	// whatever became of them (m-1 failed before writing r).
	for in, want := range map[string]string{"$(tasks.m.matrix.r.length)": "1", "$(tasks.a.matrix.s.length)": "1", "$(tasks.a.matrix.t.length)": "0"} {
		if got, err := v.string(in); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", in, got, err, want)
		}
	}
	// m failed: its results are not offered, and a reference to them is an error.
	if _, err := v.string("$(tasks.m.results.r)"); err == nil {
		t.Error("a reference to a failed task's result resolved")
	}
}

func TestTasksStatusAggregate(t *testing.T) {
	p := &plan.Plan{Tasks: []plan.Task{{Key: "a", PipelineTask: "a"}, {Key: "b", PipelineTask: "b"}, {Key: "f", PipelineTask: "f", Finally: true}}}
	for _, tc := range []struct {
		name   string
		states map[string]*plan.TaskState
		want   string
	}{
		{"all succeeded", map[string]*plan.TaskState{"a": st("a", plan.PhaseSucceeded, ""), "b": st("b", plan.PhaseSucceeded, "")}, "Succeeded"},
		{"one skipped", map[string]*plan.TaskState{"a": st("a", plan.PhaseSucceeded, ""), "b": st("b", plan.PhaseSkipped, "")}, "Completed"},
		{"one failed", map[string]*plan.TaskState{"a": st("a", plan.PhaseFailed, ""), "b": st("b", plan.PhaseSkipped, "")}, "Failed"},
		{"not done", map[string]*plan.TaskState{"a": st("a", plan.PhaseSucceeded, ""), "b": st("b", plan.PhaseRunning, "")}, "None"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newValues(p, nil, tc.states, 0).str[v1.PipelineTasksAggregateStatus]; got != tc.want {
				t.Errorf("$(tasks.status) = %q, want %q", got, tc.want)
			}
		})
	}
}

// A finally task of a flattened child pipeline aggregates only the child's DAG; a
// pipeline holding a child counts the child as one task, failed when its PipelineRun
// would fail: skips inside it, or failures it ignores, do not count.
func TestTasksStatusOfScope(t *testing.T) {
	p := &plan.Plan{Tasks: []plan.Task{
		{Key: "a", PipelineTask: "a"},
		{Key: "child-c", PipelineTask: "child-c"},
		{Key: "child-f", PipelineTask: "child-f", Finally: true, TasksStatus: &plan.TasksStatusScope{Tasks: []string{"child-c"}}},
		{Key: "f", PipelineTask: "f", Finally: true, TasksStatus: &plan.TasksStatusScope{Tasks: []string{"a"}, Children: []string{"child-c", "child-f"}}},
	}}
	for _, tc := range []struct {
		name   string
		states map[string]*plan.TaskState
		want   map[string]string
	}{{
		name: "the parent's task failed, the child's succeeded; the child's finally is not done",
		states: map[string]*plan.TaskState{
			"a": st("a", plan.PhaseFailed, "Failed"), "child-c": st("child-c", plan.PhaseSucceeded, "Succeeded"),
		},
		want: map[string]string{"a": "Failed", "child-c": "Failed", "child-f": "Succeeded", "f": "None"},
	}, {
		name: "a skip inside the child does not make the parent's Completed",
		states: map[string]*plan.TaskState{
			"a": st("a", plan.PhaseSucceeded, "Succeeded"), "child-c": st("child-c", plan.PhaseSkipped, string(v1.WhenExpressionsSkip)),
			"child-f": st("child-f", plan.PhaseSucceeded, "Succeeded"),
		},
		want: map[string]string{"a": "Completed", "child-c": "Completed", "child-f": "Completed", "f": "Succeeded"},
	}, {
		name: "a failure of the child's finally fails the child",
		states: map[string]*plan.TaskState{
			"a": st("a", plan.PhaseSucceeded, "Succeeded"), "child-c": st("child-c", plan.PhaseSucceeded, "Succeeded"),
			"child-f": st("child-f", plan.PhaseFailed, "Failed"),
		},
		want: map[string]string{"a": "Succeeded", "child-c": "Succeeded", "child-f": "Succeeded", "f": "Failed"},
	}, {
		name: "a failure the child ignores does not fail it",
		states: map[string]*plan.TaskState{
			"a": st("a", plan.PhaseSucceeded, "Succeeded"), "child-c": st("child-c", plan.PhaseFailed, "FailureIgnored"),
			"child-f": st("child-f", plan.PhaseSucceeded, "Succeeded"),
		},
		want: map[string]string{"a": "Failed", "child-c": "Failed", "child-f": "Failed", "f": "Succeeded"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]string{}
			for i := range p.Tasks {
				got[p.Tasks[i].Key] = newValues(p, &p.Tasks[i], tc.states, 0).str[v1.PipelineTasksAggregateStatus]
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("$(tasks.status) by task (-want +got):\n%s", diff)
			}
		})
	}
}
