package executor_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

func task(key string, runAfter ...string) plan.Task {
	return plan.Task{Key: key, RunAfter: runAfter}
}

func sh(script string) tstep { return tstep{script: script} }

const (
	succeeded = "Succeeded/Succeeded"
	failed    = "Failed/Failed"
)

func skipped(r v1.SkippingReason) string { return "Skipped/" + string(r) }

func TestSequential(t *testing.T) {
	t.Parallel()
	pd := newPod(t, &plan.Plan{},
		ttask{Task: task("a"), steps: []tstep{sh("echo a1 >> $ROOT/log"), sh("echo a2 >> $ROOT/log")}},
		ttask{Task: task("b", "a"), steps: []tstep{sh("echo b1 >> $ROOT/log")}},
		ttask{Task: task("c", "b"), steps: []tstep{sh("echo c1 >> $ROOT/log"), sh("echo c2 >> $ROOT/log")}},
	)
	r := pd.run()
	if diff := cmp.Diff(map[string]string{"a": succeeded, "b": succeeded, "c": succeeded}, r.phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("a1\na2\nb1\nc1\nc2\n", pd.read("log")); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if !r.done {
		t.Error("the reporter did not write its final line")
	}
	for name, code := range r.exit {
		if code != 0 {
			t.Errorf("container %s exited %d", name, code)
		}
	}
	// Steps are reported in order with their container names.
	var got []string
	for _, s := range r.states["c"].Steps {
		got = append(got, s.Name+"@"+s.Container+"/"+s.Reason)
	}
	if diff := cmp.Diff([]string{"s0@step-c-s0/Completed", "s1@step-c-s1/Completed"}, got); diff != "" {
		t.Errorf("steps of c (-want +got):\n%s", diff)
	}
}

// TestParallelAndFanIn runs a diamond: b and c both follow a and overlap in time;
// d waits for both.
func TestParallelAndFanIn(t *testing.T) {
	t.Parallel()
	pd := newPod(t, &plan.Plan{},
		ttask{Task: task("a"), steps: []tstep{sh(stamped("a", ""))}},
		ttask{Task: task("b", "a"), steps: []tstep{sh(stamped("b", barrier("b", "b", "c")))}},
		ttask{Task: task("c", "a"), steps: []tstep{sh(stamped("c", barrier("c", "b", "c")))}},
		ttask{Task: task("d", "b", "c"), steps: []tstep{sh(stamped("d", ""))}},
	)
	r := pd.run()
	want := map[string]string{"a": succeeded, "b": succeeded, "c": succeeded, "d": succeeded}
	if diff := cmp.Diff(want, r.phases()); diff != "" {
		t.Fatalf("phases (-want +got):\n%s", diff)
	}
	start := func(k string) int64 { return pd.nanos(k + ".start") }
	end := func(k string) int64 { return pd.nanos(k + ".end") }
	// Both passed a barrier that needs the other one started: they ran at once.
	t.Run("parallel branches overlap", func(t *testing.T) {
		if !(start("b") < end("c") && start("c") < end("b")) {
			t.Errorf("b [%d, %d] and c [%d, %d] did not overlap", start("b"), end("b"), start("c"), end("c"))
		}
	})
	t.Run("children start after their parent", func(t *testing.T) {
		for _, k := range []string{"b", "c"} {
			if start(k) < end("a") {
				t.Errorf("%s started before a ended", k)
			}
		}
	})
	t.Run("fan-in waits for every parent", func(t *testing.T) {
		if start("d") < end("b") || start("d") < end("c") {
			t.Errorf("d started at %d, before b (%d) or c (%d) ended", start("d"), end("b"), end("c"))
		}
	})
}

// barrier marks self started, then waits until every one of all has started; a step
// gives up (fails) after 20 s, so tasks that do not run at once fail the test.
func barrier(self string, all ...string) string {
	var files []string
	for _, k := range all {
		files = append(files, "$ROOT/"+k+".started")
	}
	return fmt.Sprintf(`touch $ROOT/%s.started
i=0
for f in %s; do
  while [ ! -e $f ]; do i=$((i+1)); [ $i -lt 400 ] || exit 1; sleep 0.05; done
done`, self, strings.Join(files, " "))
}

func TestFailurePropagation(t *testing.T) {
	t.Parallel()
	pd := newPod(t, &plan.Plan{},
		ttask{Task: task("a"), steps: []tstep{sh("exit 3"), sh("echo never > $ROOT/a2")}},
		ttask{Task: task("b", "a"), steps: []tstep{sh("echo never > $ROOT/b")}},
		// c is still running when a fails: it waits for that.
		ttask{Task: task("c"), steps: []tstep{sh(`while ! grep -q '"phase":"Failed"' $ROOT/state/a/status.json 2>/dev/null; do sleep 0.02; done; echo done > $ROOT/c`)}},
		ttask{Task: task("d", "c"), steps: []tstep{sh("echo never > $ROOT/d")}},
		ttask{Task: task("e", "b"), steps: []tstep{sh("echo never > $ROOT/e")}},
	)
	r := pd.run()
	want := map[string]string{
		"a": failed,
		"b": skipped(v1.StoppingSkip),
		"c": succeeded, // already running when a failed: it finishes
		"d": skipped(v1.StoppingSkip),
		"e": skipped(v1.StoppingSkip),
	}
	if diff := cmp.Diff(want, r.phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if got, want := r.states["a"].Message, `"step-s0" exited with code 3`; got != want {
		t.Errorf("message of a = %q, want %q", got, want)
	}
	wantSteps := []string{"s0/Error/3", "s1/Skipped/nil"}
	if diff := cmp.Diff(wantSteps, stepSummary(r.states["a"])); diff != "" {
		t.Errorf("steps of a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"step-a-s0": 3, "step-a-s1": 0}, pick(r.exit, "step-a-s0", "step-a-s1")); diff != "" {
		t.Errorf("exit codes (-want +got):\n%s", diff)
	}
	if got := pd.read("c"); got != "done\n" {
		t.Errorf("c wrote %q", got)
	}
}

func stepSummary(s plan.TaskState) []string {
	var out []string
	for _, st := range s.Steps {
		code := "nil"
		if st.ExitCode != nil {
			code = fmt.Sprint(*st.ExitCode)
		}
		out = append(out, st.Name+"/"+st.Reason+"/"+code)
	}
	return out
}

func pick(m map[string]int, keys ...string) map[string]int {
	out := map[string]int{}
	for _, k := range keys {
		out[k] = m[k]
	}
	return out
}

func TestFinallyAfterFailure(t *testing.T) {
	t.Parallel()
	fin := func(key string) plan.Task {
		tk := task(key, "a", "b", "c")
		tk.Finally = true
		return tk
	}
	guarded := fin("g")
	guarded.When = v1.WhenExpressions{{Input: "$(tasks.a.status)", Operator: selection.In, Values: []string{"Succeeded"}}}
	onFailure := fin("h")
	onFailure.When = v1.WhenExpressions{{Input: "$(tasks.status)", Operator: selection.In, Values: []string{"Failed"}}}
	pd := newPod(t, &plan.Plan{},
		ttask{Task: task("a"), steps: []tstep{sh("exit 1")}},
		ttask{Task: task("b", "a"), steps: []tstep{sh("true")}},
		ttask{Task: task("c"), steps: []tstep{sh("true")}},
		ttask{Task: fin("f"), steps: []tstep{sh(`echo "$(tasks.a.status) $(tasks.a.reason) $(tasks.b.status) $(tasks.c.status) $(tasks.status)" > $ROOT/f`)}},
		ttask{Task: guarded, steps: []tstep{sh("true")}},
		ttask{Task: onFailure, steps: []tstep{sh("echo ran > $ROOT/h")}},
	)
	r := pd.run()
	want := map[string]string{
		"a": failed, "b": skipped(v1.StoppingSkip), "c": succeeded,
		"f": succeeded, "g": skipped(v1.WhenExpressionsSkip), "h": succeeded,
	}
	if diff := cmp.Diff(want, r.phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("Failed Failed None Succeeded Failed\n", pd.read("f")); diff != "" {
		t.Errorf("statuses seen by finally (-want +got):\n%s", diff)
	}
}

func TestWhenOnResult(t *testing.T) {
	t.Parallel()
	when := func(tk plan.Task, input string, values ...string) plan.Task {
		tk.When = v1.WhenExpressions{{Input: input, Operator: selection.In, Values: values}}
		return tk
	}
	withResults := func(tk plan.Task, from ...string) plan.Task {
		tk.ResultsFrom = from
		return tk
	}
	a := task("a")
	a.Results = []plan.Result{{Name: "flag"}}
	c := when(task("c", "a"), "$(tasks.a.results.flag)", "no")
	c.Results = []plan.Result{{Name: "r"}}
	pd := newPod(t, &plan.Plan{},
		ttask{Task: a, steps: []tstep{sh("printf yes > $RESULTS/flag")}},
		ttask{Task: withResults(when(task("b", "a"), "$(tasks.a.results.flag)", "yes"), "a"), steps: []tstep{sh("echo '$(tasks.a.results.flag)' > $ROOT/b")}},
		ttask{Task: withResults(c, "a"), steps: []tstep{sh("printf x > $RESULTS/r")}},
		ttask{Task: task("d", "c"), steps: []tstep{sh("echo ran > $ROOT/d")}},
		ttask{Task: withResults(task("e", "c"), "c"), steps: []tstep{sh("echo '$(tasks.c.results.r)'")}},
		ttask{Task: task("f", "e"), steps: []tstep{sh("true")}},
		ttask{Task: when(task("g"), "$(tasks.status)", "None"), steps: []tstep{sh("true")}},
	)
	r := pd.run()
	want := map[string]string{
		"a": succeeded,
		"b": succeeded,
		"c": skipped(v1.WhenExpressionsSkip),
		"d": succeeded,                      // a when-skip does not cascade
		"e": skipped(v1.MissingResultsSkip), // ... unless the child needs the results
		"f": skipped(v1.ParentTasksSkip),
		"g": succeeded,
	}
	if diff := cmp.Diff(want, r.phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if got := pd.read("b"); got != "yes\n" {
		t.Errorf("b saw %q", got)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	// The second step fails until its third run; both steps rerun on every attempt.
	flaky := func(root string) []tstep {
		return []tstep{
			sh("echo $(context.task.retry-count) >> $ROOT/" + root + ".first"),
			sh(`n=$(cat $ROOT/` + root + `.count 2>/dev/null || echo 0); n=$((n+1)); echo $n > $ROOT/` + root + `.count
echo $(context.task.retry-count) >> $ROOT/` + root + `.second
[ $n -ge 3 ]`),
		}
	}
	for _, tc := range []struct {
		name      string
		retries   int
		want      string
		wantRetry int
		wantRuns  string
	}{
		{name: "fails twice then succeeds", retries: 2, want: succeeded, wantRetry: 2, wantRuns: "0\n1\n2\n"},
		{name: "out of retries", retries: 1, want: failed, wantRetry: 1, wantRuns: "0\n1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r0 := task("r")
			r0.Retries = tc.retries
			pd := newPod(t, &plan.Plan{},
				ttask{Task: r0, steps: flaky("r")},
				ttask{Task: task("after", "r"), steps: []tstep{sh("true")}},
			)
			r := pd.run()
			st := r.states["r"]
			if got := string(st.Phase) + "/" + st.Reason; got != tc.want {
				t.Errorf("r is %s, want %s", got, tc.want)
			}
			if st.RetryCount != tc.wantRetry {
				t.Errorf("RetryCount = %d, want %d", st.RetryCount, tc.wantRetry)
			}
			var attempts []string
			for _, a := range st.Attempts {
				attempts = append(attempts, fmt.Sprintf("%d:%s/%s:%v", a.RetryCount, a.Phase, a.Reason, stepSummary(a)))
			}
			var wantAttempts []string
			for i := range tc.retries {
				wantAttempts = append(wantAttempts, fmt.Sprintf("%d:Failed/Failed:[s0/Completed/0 s1/Error/1]", i))
			}
			if diff := cmp.Diff(wantAttempts, attempts); diff != "" {
				t.Errorf("attempts (-want +got):\n%s", diff)
			}
			for _, f := range []string{"r.first", "r.second"} {
				if diff := cmp.Diff(tc.wantRuns, pd.read(f)); diff != "" {
					t.Errorf("retry counts seen by %s (-want +got):\n%s", f, diff)
				}
			}
			wantExit := 0
			if tc.want == failed {
				wantExit = 1
			}
			if got := r.exit["step-r-s1"]; got != wantExit {
				t.Errorf("step-r-s1 exited %d, want %d", got, wantExit)
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	d := func(s string) *metav1.Duration {
		v, _ := time.ParseDuration(s)
		return &metav1.Duration{Duration: v}
	}
	for _, tc := range []struct {
		name        string
		plan        *plan.Plan
		task        func() plan.Task
		steps       []tstep
		want        map[string]string
		wantMessage string
		wantSteps   []string
	}{{
		name: "task timeout",
		plan: &plan.Plan{},
		task: func() plan.Task {
			tk := task("t")
			tk.Timeout = d("300ms")
			return tk
		},
		steps:       []tstep{sh("sleep 10"), sh("true")},
		want:        map[string]string{"t": "Failed/TaskRunTimeout", "next": skipped(v1.StoppingSkip)},
		wantMessage: `TaskRun "t-tr" failed to finish within "300ms"`,
		wantSteps:   []string{"s0/TaskRunTimeout/1", "s1/TaskRunTimeout/1"},
	}, {
		name:        "step timeout",
		plan:        &plan.Plan{},
		task:        func() plan.Task { return task("t") },
		steps:       []tstep{{script: "sleep 10", timeout: 300 * time.Millisecond}, sh("true")},
		want:        map[string]string{"t": failed, "next": skipped(v1.StoppingSkip)},
		wantMessage: `"step-s0" exited because the step exceeded the specified timeout limit`,
		wantSteps:   []string{"s0/TimeoutExceeded/1", "s1/Skipped/nil"},
	}, {
		name:        "tasks timeout",
		plan:        &plan.Plan{TasksTimeout: d("300ms")},
		task:        func() plan.Task { return task("t") },
		steps:       []tstep{sh("sleep 10")},
		want:        map[string]string{"t": "Failed/TaskRunCancelled", "next": skipped(v1.StoppingSkip), "fin": succeeded},
		wantMessage: `TaskRun "t-tr" was cancelled. TaskRun cancelled as the PipelineRun it belongs to has timed out.`,
		wantSteps:   []string{"s0/TaskRunCancelled/1"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tasks := []ttask{
				{Task: tc.task(), steps: tc.steps},
				{Task: task("next", "t"), steps: []tstep{sh("true")}},
			}
			if _, ok := tc.want["fin"]; ok {
				fin := task("fin", "t", "next")
				fin.Finally = true
				tasks = append(tasks, ttask{Task: fin, steps: []tstep{sh("true")}})
			}
			r := newPod(t, tc.plan, tasks...).run()
			if diff := cmp.Diff(tc.want, r.phases()); diff != "" {
				t.Errorf("phases (-want +got):\n%s", diff)
			}
			if got := r.states["t"].Message; got != tc.wantMessage {
				t.Errorf("message = %q, want %q", got, tc.wantMessage)
			}
			if diff := cmp.Diff(tc.wantSteps, stepSummary(r.states["t"])); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOnError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		onError   string
		want      string
		wantSteps []string
		wantExit  int
	}{
		{onError: "continue", want: succeeded, wantSteps: []string{"s0/Completed/7", "s1/Completed/0"}, wantExit: 0},
		{onError: "stopAndFail", want: failed, wantSteps: []string{"s0/Error/7", "s1/Skipped/nil"}, wantExit: 7},
	} {
		t.Run(tc.onError, func(t *testing.T) {
			t.Parallel()
			r := newPod(t, &plan.Plan{},
				ttask{Task: task("t"), steps: []tstep{{script: "exit 7", onError: tc.onError}, sh("true")}},
			).run()
			if got := string(r.states["t"].Phase) + "/" + r.states["t"].Reason; got != tc.want {
				t.Errorf("t is %s, want %s", got, tc.want)
			}
			if diff := cmp.Diff(tc.wantSteps, stepSummary(r.states["t"])); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			if got := r.exit["step-t-s0"]; got != tc.wantExit {
				t.Errorf("step-t-s0 exited %d, want %d", got, tc.wantExit)
			}
		})
	}
}

func TestThirtyParallelTasks(t *testing.T) {
	t.Parallel()
	tasks := []ttask{{Task: task("root"), steps: []tstep{sh("true")}}}
	var keys []string
	want := map[string]string{"root": succeeded, "join": succeeded}
	for i := range 30 {
		k := fmt.Sprintf("p%02d", i)
		keys = append(keys, k)
		want[k] = succeeded
	}
	for _, k := range keys {
		tasks = append(tasks, ttask{Task: task(k, "root"), steps: []tstep{sh(stamped(k, barrier(k, keys...)))}})
	}
	tasks = append(tasks, ttask{Task: task("join", keys...), steps: []tstep{sh(stamped("join", ""))}})
	pd := newPod(t, &plan.Plan{}, tasks...)
	r := pd.run()
	if diff := cmp.Diff(want, r.phases()); diff != "" {
		t.Fatalf("phases (-want +got):\n%s", diff)
	}
	// Each branch passed a barrier needing all 30 started, so all ran at once.
	for _, k := range keys {
		if pd.nanos("join.start") < pd.nanos(k+".end") {
			t.Errorf("join started before %s ended", k)
		}
	}
}

// TestLargeResults sends 20 KB of results, far over the pod's 12 KiB of termination
// messages, through the reporter's log to plan.ReadReport.
func TestLargeResults(t *testing.T) {
	t.Parallel()
	var tasks []ttask
	want := map[string][]v1.TaskRunResult{}
	total := 0
	for i := range 10 {
		k := fmt.Sprintf("t%d", i)
		val := strings.Repeat(fmt.Sprintf("%d-%s|", i, strings.Repeat("x", 40)), 48)[:2048]
		total += len(val)
		tk := task(k)
		tk.Results = []plan.Result{{Name: "blob", Type: v1.ResultsTypeString}}
		tasks = append(tasks, ttask{Task: tk, steps: []tstep{sh(fmt.Sprintf("cat $ROOT/%s.want > $RESULTS/blob", k))}})
		want[k] = []v1.TaskRunResult{{Name: "blob", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(val)}}
	}
	pd := newPod(t, &plan.Plan{}, tasks...)
	for k, rs := range want {
		pd.write(pd.path(k+".want"), rs[0].Value.StringVal, 0o644)
	}
	r := pd.run()
	if total < 20*1024 {
		t.Fatalf("only %d bytes of results", total)
	}
	got := map[string][]v1.TaskRunResult{}
	for k, s := range r.states {
		got[k] = s.Results
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	for k := range want {
		if diff := cmp.Diff(want[k][0].Value.StringVal, pd.read("state", k, "results", "blob")); diff != "" {
			t.Errorf("published result of %s (-want +got):\n%s", k, diff)
		}
	}
}

// TestRunTimeSubstitution covers results reaching args (an array expanding into
// several), env, scripts and workingDir, including a matrixed producer.
func TestRunTimeSubstitution(t *testing.T) {
	t.Parallel()
	a := task("a")
	a.Results = []plan.Result{
		{Name: "arr", Type: v1.ResultsTypeArray},
		{Name: "obj", Type: v1.ResultsTypeObject},
		{Name: "str", Type: v1.ResultsTypeString},
	}
	m0, m1 := task("m-0"), task("m-1")
	for _, m := range []*plan.Task{&m0, &m1} {
		m.PipelineTask = "m"
		m.Results = []plan.Result{{Name: "r"}}
	}
	c := task("c", "a", "m-0", "m-1")
	c.ResultsFrom = []string{"a", "m"}
	pd := newPod(t, &plan.Plan{},
		ttask{Task: a, steps: []tstep{sh(`printf '["x","y z","w"]' > $RESULTS/arr
printf '{"k":"v"}' > $RESULTS/obj
printf 'sub' > $RESULTS/str`)}},
		ttask{Task: m0, steps: []tstep{sh("printf m0 > $RESULTS/r")}},
		ttask{Task: m1, steps: []tstep{sh("printf m1 > $RESULTS/r")}},
		ttask{Task: c, steps: []tstep{
			{command: []string{"/bin/sh", "-c", `printf '%s|' "$@" > $ROOT/args`, "sh",
				"$(tasks.a.results.arr[*])", "$(tasks.a.results.arr[1])", "$(tasks.a.results.obj.k)", "pre-$(tasks.a.results.str)", "$(tasks.m.results.r[*])"}},
			{script: `echo "$(tasks.a.results.str) $ENVV $(pwd)" > $ROOT/script`, env: []string{"ENVV=$(tasks.a.results.obj.k)"}},
		}},
	)
	pd.tasks[3].steps[1].workdir = pd.root + "/wd-$(tasks.a.results.str)"
	r := pd.run()
	want := map[string]string{"a": succeeded, "m-0": succeeded, "m-1": succeeded, "c": succeeded}
	if diff := cmp.Diff(want, r.phases()); diff != "" {
		t.Fatalf("phases (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("x|y z|w|y z|v|pre-sub|m0|m1|", pd.read("args")); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(fmt.Sprintf("sub v %s/wd-sub\n", pd.root), pd.read("script")); diff != "" {
		t.Errorf("script (-want +got):\n%s", diff)
	}
	wantResults := []v1.TaskRunResult{
		{Name: "arr", Type: v1.ResultsTypeArray, Value: v1.ResultValue{Type: v1.ParamTypeArray, ArrayVal: []string{"x", "y z", "w"}}},
		{Name: "obj", Type: v1.ResultsTypeObject, Value: v1.ResultValue{Type: v1.ParamTypeObject, ObjectVal: map[string]string{"k": "v"}}},
		{Name: "str", Type: v1.ResultsTypeString, Value: v1.ResultValue{Type: v1.ParamTypeString, StringVal: "sub"}},
	}
	if diff := cmp.Diff(wantResults, r.states["a"].Results); diff != "" {
		t.Errorf("typed results (-want +got):\n%s", diff)
	}
}

// TestMissingResultFailsStep: a reference to a result its producer never wrote fails
// the consuming step rather than running it with the reference left in.
func TestMissingResultFailsStep(t *testing.T) {
	t.Parallel()
	a := task("a")
	a.Results = []plan.Result{{Name: "r"}}
	b := task("b", "a")
	b.ResultsFrom = []string{"a"}
	r := newPod(t, &plan.Plan{},
		ttask{Task: a, steps: []tstep{sh("true")}},
		ttask{Task: b, steps: []tstep{sh("echo '$(tasks.a.results.r)'")}},
	).run()
	if diff := cmp.Diff(map[string]string{"a": succeeded, "b": failed}, r.phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
}

func TestSidecarStopsWithItsTask(t *testing.T) {
	t.Parallel()
	sidecar := func(name string) string {
		return "trap 'echo stopped > $ROOT/" + name + "; exit 0' TERM; touch $ROOT/" + name + ".ready; while true; do sleep 0.05; done"
	}
	never := task("d")
	never.When = v1.WhenExpressions{{Input: "x", Operator: selection.In, Values: []string{"y"}}}
	pd := newPod(t, &plan.Plan{},
		// a's step waits for its sidecar, so the sidecar's TERM trap is in place.
		ttask{Task: task("a"), steps: []tstep{sh("while [ ! -e $ROOT/sc-a.ready ]; do sleep 0.02; done")}, sidecar: sidecar("sc-a")},
		// b, after a, needs a's sidecar stopped: it stops when a ends, not with the pod.
		ttask{Task: task("b", "a"), steps: []tstep{sh("i=0; while [ ! -e $ROOT/sc-a ]; do i=$((i+1)); [ $i -lt 400 ] || exit 1; sleep 0.05; done")}},
		// A skipped task's sidecar stops too (maybe before its trap is set: no file).
		ttask{Task: never, steps: []tstep{sh("true")}, sidecar: sidecar("sc-d")},
	)
	// The pod finishing at all shows both sidecars stopped: run waits for every container.
	r := pd.run()
	if diff := cmp.Diff(map[string]string{"a": succeeded, "b": succeeded, "d": skipped(v1.WhenExpressionsSkip)}, r.phases()); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"step-a-sidecar": 0, "step-d-sidecar": 0}, pick(r.exit, "step-a-sidecar", "step-d-sidecar")); diff != "" {
		t.Errorf("sidecar exit codes (-want +got):\n%s", diff)
	}
}

// TestReportLines checks the reporter's contract: JSON lines, each task's final state
// once, and a final done marker.
func TestReportLines(t *testing.T) {
	t.Parallel()
	pd := newPod(t, &plan.Plan{}, ttask{Task: task("a"), steps: []tstep{sh("true")}})
	r := pd.run()
	lines := strings.Split(strings.TrimSpace(r.reportRaw), "\n")
	var last plan.ReportLine
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(plan.ReportLine{Done: true}, last); diff != "" {
		t.Errorf("last line (-want +got):\n%s", diff)
	}
	finals := 0
	for _, l := range lines[:len(lines)-1] {
		var rl plan.ReportLine
		if err := json.Unmarshal([]byte(l), &rl); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if rl.Task != nil && rl.Task.Phase.IsTerminal() {
			finals++
		}
	}
	if finals != 1 {
		t.Errorf("%d terminal lines for one task", finals)
	}
}

// TestStepResults: a step result is readable by later steps through /tekton/steps
// (the links each step creates), is reported on its StepState, and can be a task result.
func TestStepResults(t *testing.T) {
	t.Parallel()
	tk := task("t")
	tk.Results = []plan.Result{{Name: "out", Value: "$(steps.make.results.foo)"}}
	pd := newPod(t, &plan.Plan{}, ttask{Task: tk, steps: []tstep{
		{name: "make", script: "printf bar > $STEPS/step-make/results/foo"},
		{name: "use", script: "cat $STEPS/step-make/results/foo $STEPS/0/results/foo > $ROOT/seen"},
	}})
	r := pd.run()
	if got := r.phases()["t"]; got != succeeded {
		t.Fatalf("t is %s", got)
	}
	if got := pd.read("seen"); got != "barbar" {
		t.Errorf("the second step saw %q", got)
	}
	want := []v1.TaskRunResult{{Name: "out", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("bar")}}
	if diff := cmp.Diff(want, r.states["t"].Results); diff != "" {
		t.Errorf("task results (-want +got):\n%s", diff)
	}
	wantStep := []v1.TaskRunResult{{Name: "foo", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("bar")}}
	if diff := cmp.Diff(wantStep, r.states["t"].Steps[0].Results); diff != "" {
		t.Errorf("step results (-want +got):\n%s", diff)
	}
}

// TestCancel: once the cancel file (Tekton's downward cancel annotation) has content,
// running steps stop and nothing else starts.
func TestCancel(t *testing.T) {
	t.Parallel()
	fin := task("f", "a", "b", "x")
	fin.Finally = true
	pd := newPod(t, &plan.Plan{},
		ttask{Task: task("a"), steps: []tstep{sh("touch $ROOT/a.started; sleep 10")}},
		ttask{Task: task("b", "a"), steps: []tstep{sh("true")}},
		ttask{Task: task("x"), steps: []tstep{sh("while [ ! -e $ROOT/a.started ]; do sleep 0.02; done; echo cancel > $ROOT/cancel")}},
		ttask{Task: fin, steps: []tstep{sh("true")}},
	)
	r := pd.run()
	got := r.phases()
	delete(got, "x") // it may see the cancellation itself
	want := map[string]string{"a": "Failed/TaskRunCancelled", "b": skipped(v1.StoppingSkip), "f": skipped(v1.StoppingSkip)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"s0/Cancelled/9"}, stepSummary(r.states["a"])); diff != "" {
		t.Errorf("steps of a (-want +got):\n%s", diff)
	}
}

func TestInit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := &plan.Plan{Tasks: []plan.Task{{Key: "a", Steps: []string{"step-a"}}}}
	b, _ := p.Encode()
	planFile := dir + "/plan.json"
	if err := os.WriteFile(planFile, []byte(b), 0o644); err != nil {
		t.Fatal(err)
	}
	state := dir + "/state"
	copied := dir + "/bin/entrypoint"
	for range 2 { // a second run must keep the first start time
		if out, err := exec.CommandContext(t.Context(), bin, "-pip_mode", "init", "-pip_plan", planFile, "-pip_state", state, "-pip_bin", copied).CombinedOutput(); err != nil {
			t.Fatalf("init: %v\n%s", err, out)
		}
	}
	if out, err := exec.CommandContext(t.Context(), copied, "-pip_mode", "nope").CombinedOutput(); err == nil || !strings.Contains(string(out), "unknown -pip_mode") {
		t.Errorf("the copied binary does not run as the entrypoint: %v\n%s", err, out)
	}
	start, err := os.ReadFile(plan.StartFile(state))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339Nano, string(start)); err != nil {
		t.Errorf("start %q: %v", start, err)
	}
	for _, d := range []string{plan.TaskDir(state, "a"), plan.ResultsDir(state, "a")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o777 {
			t.Errorf("%s: %v %v", d, fi.Mode(), err)
		}
	}
}

// TestTimedOutAttemptIsRetried: like Tekton, a TaskRun timeout is retried, each
// attempt with the full timeout.
func TestTimedOutAttemptIsRetried(t *testing.T) {
	t.Parallel()
	tk := task("t")
	tk.Retries = 1
	tk.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond}
	r := newPod(t, &plan.Plan{}, ttask{Task: tk, steps: []tstep{
		sh(`[ "$(context.task.retry-count)" = 1 ] || sleep 10`), sh("true"),
	}}).run()
	st := r.states["t"]
	if got := string(st.Phase) + "/" + st.Reason; got != succeeded {
		t.Errorf("t is %s", got)
	}
	var attempts []string
	for _, a := range st.Attempts {
		attempts = append(attempts, fmt.Sprintf("%s/%s:%v", a.Phase, a.Reason, stepSummary(a)))
	}
	want := []string{"Failed/TaskRunTimeout:[s0/TaskRunTimeout/1 s1/TaskRunTimeout/1]"}
	if diff := cmp.Diff(want, attempts); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}
}
