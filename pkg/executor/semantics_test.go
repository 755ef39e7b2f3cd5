package executor_test

import (
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// CEL when expressions are decided in the pod once the results and statuses they name
// are known, as Tekton's reconciler decides them once it can substitute them.
func TestCELWhenAtRunTime(t *testing.T) {
	t.Parallel()
	cel := func(tk plan.Task, exprs ...string) plan.Task {
		for _, e := range exprs {
			tk.When = append(tk.When, v1.WhenExpression{CEL: e})
		}
		return tk
	}
	a := task("a")
	a.Results = []plan.Result{{Name: "flag"}}
	fromA := func(key string) plan.Task {
		tk := task(key, "a")
		tk.ResultsFrom = []string{"a"}
		return tk
	}
	finally := func(key string) plan.Task {
		tk := task(key, "a", "b", "c", "d")
		tk.Finally = true
		return tk
	}
	pd := newPod(t, &plan.Plan{},
		ttask{Task: a, steps: []tstep{sh("printf yes > $RESULTS/flag")}},
		ttask{Task: cel(fromA("b"), "'$(tasks.a.results.flag)' == 'yes'"), steps: []tstep{sh("echo b > $ROOT/b")}},
		ttask{Task: cel(fromA("c"), "'$(tasks.a.results.flag)' == 'no'"), steps: []tstep{sh("exit 1")}},
		ttask{Task: cel(fromA("d"), "'$(tasks.a.results.flag)'.matches('^y.s$') && size('$(tasks.a.results.flag)') > 2"), steps: []tstep{sh("true")}},
		ttask{Task: cel(finally("f"), "'$(tasks.status)' == 'Completed'", "'$(tasks.b.status)' == 'Succeeded'", "'$(tasks.c.status)' == 'None'"), steps: []tstep{sh("true")}},
		ttask{Task: cel(finally("g"), "'$(tasks.status)' == 'Succeeded'"), steps: []tstep{sh("exit 1")}},
	)
	r := pd.run()
	want := map[string]string{
		"a": succeeded, "b": succeeded, "c": skipped(v1.WhenExpressionsSkip), "d": succeeded,
		"f": succeeded, "g": skipped(v1.WhenExpressionsSkip),
	}
	if diff := cmp.Diff(want, r.phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
}

// A CEL expression that only breaks once a result is in it fails its task with Tekton's
// reason, and the pipeline stops.
func TestCELWhenThatCannotBeEvaluated(t *testing.T) {
	t.Parallel()
	a := task("a")
	a.Results = []plan.Result{{Name: "r"}}
	b := task("b", "a")
	b.ResultsFrom = []string{"a"}
	b.When = v1.WhenExpressions{{CEL: "'$(tasks.a.results.r)' == 'x'"}}
	r := newPod(t, &plan.Plan{},
		ttask{Task: a, steps: []tstep{sh(`printf "it's" > $RESULTS/r`)}},
		ttask{Task: b, steps: []tstep{sh("true")}},
		ttask{Task: task("c", "b"), steps: []tstep{sh("true")}},
	).run()
	want := map[string]string{"a": succeeded, "b": "Failed/CELEvaluationFailed", "c": skipped(v1.StoppingSkip)}
	if diff := cmp.Diff(want, r.phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
}

// $(tasks.<t>.matrix.<result>.length) is the number of t's instances that produced the
// result when the consumer starts.
func TestMatrixResultLength(t *testing.T) {
	t.Parallel()
	var ms []ttask
	for i, script := range []string{"printf 0 > $RESULTS/r", "true", "printf 2 > $RESULTS/r"} {
		m := task("m-" + strconv.Itoa(i))
		m.PipelineTask = "m"
		m.Results = []plan.Result{{Name: "r"}, {Name: "never"}}
		ms = append(ms, ttask{Task: m, steps: []tstep{sh(script)}})
	}
	c := task("c", "m-0", "m-1", "m-2")
	pd := newPod(t, &plan.Plan{}, append(ms, ttask{Task: c, steps: []tstep{
		sh("echo $(tasks.m.matrix.r.length) $(tasks.m.matrix.never.length) > $ROOT/len"),
	}})...)
	r := pd.run()
	if diff := cmp.Diff(map[string]string{"m-0": succeeded, "m-1": succeeded, "m-2": succeeded, "c": succeeded}, r.phases()); diff != "" {
		t.Fatalf("phases (-want +got):\n%s", diff)
	}
	if got := pd.read("len"); got != "2 0\n" {
		t.Errorf("lengths %q, want \"2 0\\n\"", got)
	}
}

// The finally task of a flattened child pipeline sees its own pipeline's $(tasks.status).
func TestTasksStatusOfAChildPipeline(t *testing.T) {
	t.Parallel()
	a := task("a")
	a.When = v1.WhenExpressions{{Input: "x", Operator: selection.In, Values: []string{"y"}}}
	childF := task("child-f", "child-c")
	childF.Finally, childF.TasksStatus = true, &plan.TasksStatusScope{Tasks: []string{"child-c"}}
	f := task("f", "a", "child-c", "child-f")
	f.Finally, f.TasksStatus = true, &plan.TasksStatusScope{Tasks: []string{"a"}, Children: []string{"child-c", "child-f"}}
	pd := newPod(t, &plan.Plan{},
		ttask{Task: a, steps: []tstep{sh("true")}},
		ttask{Task: task("child-c"), steps: []tstep{sh("true")}},
		ttask{Task: childF, steps: []tstep{sh("echo $(tasks.status) > $ROOT/child")}},
		ttask{Task: f, steps: []tstep{sh("echo $(tasks.status) > $ROOT/parent")}},
	)
	r := pd.run()
	want := map[string]string{"a": skipped(v1.WhenExpressionsSkip), "child-c": succeeded, "child-f": succeeded, "f": succeeded}
	if diff := cmp.Diff(want, r.phases()); diff != "" {
		t.Fatalf("phases (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("Succeeded\nCompleted\n", pd.read("child")+pd.read("parent")); diff != "" {
		t.Errorf("$(tasks.status) of child-f then f (-want +got):\n%s", diff)
	}
}

// A run whose every task was skipped before it began has a pod with no task: the
// reporter finds nothing to wait for and says so at once.
func TestNothingToRun(t *testing.T) {
	t.Parallel()
	r := newPod(t, &plan.Plan{}).run()
	if !r.done || len(r.states) != 0 {
		t.Errorf("done %v, states %v; want done and no state", r.done, r.states)
	}
	if diff := cmp.Diff(map[string]int{plan.ReporterContainer: 0}, r.exit); diff != "" {
		t.Errorf("exit codes (-want +got):\n%s", diff)
	}
}

// A sidecar without command runs the command looked up in its image's registry, and is
// stopped when its task ends like any other.
func TestSidecarWithLookedUpCommand(t *testing.T) {
	t.Parallel()
	pd := newPod(t, &plan.Plan{},
		ttask{
			Task:            task("a"),
			steps:           []tstep{sh("while [ ! -e $ROOT/sc.ready ]; do sleep 0.02; done")},
			sidecar:         "trap 'echo stopped > $ROOT/sc; exit 0' TERM; touch $ROOT/sc.ready; while true; do sleep 0.05; done",
			sidecarLookedUp: true,
		},
	)
	r := pd.run()
	if diff := cmp.Diff(map[string]string{"a": succeeded}, r.phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if got := pd.read("sc"); got != "stopped\n" {
		t.Errorf("the sidecar wrote %q, want it stopped", got)
	}
}
