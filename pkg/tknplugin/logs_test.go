package tknplugin

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// The tasks of the test run, in plan order: clone (with a sidecar), flaky (retried, its
// retry within the second its first attempt ended), slow (retried a second later), never
// (skipped), notify (finally).
var (
	clone  = task{name: "clone", key: "clone", steps: []string{"write"}, sidecars: []string{"helper"}}
	flaky  = task{name: "flaky", key: "flaky", steps: []string{"try", "check"}}
	slow   = task{name: "slow", key: "slow", steps: []string{"fetch"}}
	never  = task{name: "never", key: "never", steps: []string{"run"}}
	notify = task{name: "notify", key: "notify", steps: []string{"say"}}
)

// timeline is the test run, in the order things happen in its pod: each step adds log
// lines (the tasks' and the reporter's) and ends containers. run applies them all.
func timeline(w *world) []func() {
	pod := plan.PodName(w.name, 0)
	logs := func(container string, l ...LogLine) { w.logs.add(pod, container, l...) }
	rep := func(l ...LogLine) { logs(plan.ReporterContainer, l...) }
	flakyFailed := plan.TaskState{Key: "flaky", Phase: plan.PhaseFailed, Reason: "Failed", StartTime: mt(2), CompletionTime: mt(2.3),
		Steps: []plan.StepState{stepState(flaky, "try", 2, 2.2, 1), {Name: "check", Container: flaky.container("check"), Reason: "Skipped"}}}
	slowFailed := plan.TaskState{Key: "slow", Phase: plan.PhaseFailed, Reason: "Failed", StartTime: mt(4), CompletionTime: mt(4.1),
		Steps: []plan.StepState{stepState(slow, "fetch", 4, 4.1, 1)}}
	return []func(){
		func() {
			w.addPod(0, clone, flaky, slow, never, notify)
			logs("step-pip-init", line(0.5, "copying the entrypoint"))
			w.updatePod(0, running)
		},
		func() {
			logs(clone.container("helper"), line(1.0, "helper up"))
			logs(clone.container("write"), line(1.1, "cloned"))
			rep(report(0.9, plan.TaskState{Key: "clone", Phase: plan.PhaseRunning, StartTime: mt(1), Steps: []plan.StepState{stepState(clone, "write", 1, -1, 0)}}))
		},
		func() {
			logs(clone.container("write"), line(1.2, "two files"))
			rep(report(1.5, plan.TaskState{Key: "clone", Phase: plan.PhaseSucceeded, StartTime: mt(1), CompletionTime: mt(1.3),
				Steps: []plan.StepState{stepState(clone, "write", 1, 1.3, 0)}}))
		},
		func() {
			w.updatePod(0, terminate(clone.container("write"), clone.container("helper")))
			logs(flaky.container("try"), line(2.1, "try 0"))
			rep(report(2.05, plan.TaskState{Key: "flaky", Phase: plan.PhaseRunning, StartTime: mt(2), Steps: []plan.StepState{stepState(flaky, "try", 2, -1, 0)}}))
		},
		func() {
			// The retry shows on the reporter at 2.4; attempt 1 writes at 2.6, in the
			// second attempt 0 ended.
			rep(report(2.4, plan.TaskState{Key: "flaky", Phase: plan.PhaseRunning, StartTime: mt(2.5), RetryCount: 1, Attempts: []plan.TaskState{flakyFailed}}))
			logs(flaky.container("try"), line(2.6, "try 1"))
			rep(report(2.8, plan.TaskState{Key: "flaky", Phase: plan.PhaseRunning, StartTime: mt(2.5), RetryCount: 1, Attempts: []plan.TaskState{flakyFailed},
				Steps: []plan.StepState{stepState(flaky, "try", 2.5, 2.7, 0), stepState(flaky, "check", 3, -1, 0)}}))
		},
		func() {
			logs(flaky.container("check"), line(3.1, "checked"))
			rep(report(3.5, plan.TaskState{Key: "flaky", Phase: plan.PhaseSucceeded, StartTime: mt(2.5), CompletionTime: mt(3.3), RetryCount: 1,
				Attempts: []plan.TaskState{flakyFailed}, Steps: []plan.StepState{stepState(flaky, "try", 2.5, 2.7, 0), stepState(flaky, "check", 3, 3.2, 0)}}))
			w.updatePod(0, terminate(flaky.container("try"), flaky.container("check")))
		},
		func() {
			// slow's retry shows on the reporter late (5.5), after attempt 1 wrote (5.3):
			// attempt 0's step ended in an earlier second, which tells them apart.
			logs(slow.container("fetch"), line(4.05, "fetch failed"), line(5.3, "fetch ok"))
			rep(report(4.0, plan.TaskState{Key: "slow", Phase: plan.PhaseRunning, StartTime: mt(4), Steps: []plan.StepState{stepState(slow, "fetch", 4, -1, 0)}}),
				report(5.5, plan.TaskState{Key: "slow", Phase: plan.PhaseRunning, StartTime: mt(5.2), RetryCount: 1, Attempts: []plan.TaskState{slowFailed},
					Steps: []plan.StepState{stepState(slow, "fetch", 5.2, -1, 0)}}),
				report(5.9, plan.TaskState{Key: "slow", Phase: plan.PhaseSucceeded, StartTime: mt(5.2), CompletionTime: mt(5.8), RetryCount: 1,
					Attempts: []plan.TaskState{slowFailed}, Steps: []plan.StepState{stepState(slow, "fetch", 5.2, 5.8, 0)}}),
				report(6.0, plan.TaskState{Key: "never", Phase: plan.PhaseSkipped, Reason: "When Expressions evaluated to false", CompletionTime: mt(6)}))
			w.updatePod(0, terminate(slow.container("fetch"), never.container("run")))
		},
		func() {
			logs(notify.container("say"), line(8.1, "pipeline finished: Succeeded"))
			rep(report(8.5, plan.TaskState{Key: "notify", Phase: plan.PhaseSucceeded, StartTime: mt(8), CompletionTime: mt(8.2),
				Steps: []plan.StepState{stepState(notify, "say", 8, 8.2, 0)}}),
				LogLine{Time: at(8.6), Text: `{"done":true}`})
			w.updatePod(0, terminate())
			w.updateCR(succeed)
		},
	}
}

// finishedRun is the test run, over.
func finishedRun(t *testing.T) *world {
	w := newWorld(t, "run")
	for _, step := range timeline(w) {
		step()
	}
	return w
}

// What the run prints: each task's steps in plan order, every attempt of the retried
// tasks in order, nothing of the skipped task, the sidecar or the reporter.
var wantRunLogs = lines(
	"[clone : write] cloned",
	"[clone : write] two files",
	"",
	"[flaky : try] try 0",
	"",
	"[flaky : try] try 1",
	"",
	"[flaky : check] checked",
	"",
	"[slow : fetch] fetch failed",
	"",
	"[slow : fetch] fetch ok",
	"",
	"[notify : say] pipeline finished: Succeeded",
	"",
)

func TestLogs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{{
		name: "every task",
		args: []string{"logs", "run"},
		want: wantRunLogs,
	}, {
		name: "--all adds the pod's init containers and the sidecars",
		args: []string{"logs", "run", "--all", "-n", testNS},
		want: lines("[pod : pip-init] copying the entrypoint", "",
			"[clone : write] cloned", "[clone : write] two files", "", "[clone : helper] helper up", "") +
			strings.TrimPrefix(wantRunLogs, lines("[clone : write] cloned", "[clone : write] two files", "")),
	}, {
		name: "some tasks, in plan order whatever the order asked",
		args: []string{"logs", "run", "notify", "flaky"},
		want: lines("[flaky : try] try 0", "", "[flaky : try] try 1", "", "[flaky : check] checked", "",
			"[notify : say] pipeline finished: Succeeded", ""),
	}, {
		name: "a skipped task shows nothing",
		args: []string{"logs", "run", "never"},
		want: "",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			w := finishedRun(t)
			var e testEnv
			if code := Main(context.Background(), e.env(w), tc.args); code != 0 {
				t.Fatalf("exit %d, stderr %s", code, e.err.String())
			}
			if d := cmp.Diff(tc.want, e.out.String()); d != "" {
				t.Errorf("output (-want +got):\n%s", d)
			}
			if e.err.Len() != 0 {
				t.Errorf("stderr: %s", e.err.String())
			}
		})
	}
}

// Following a live run prints the same, task by task as they run, and ends when the
// run ends.
func TestLogsFollow(t *testing.T) {
	w := newWorld(t, "run")
	var e testEnv
	e.frames = timeline(w)
	if code := Main(context.Background(), e.env(w), []string{"logs", "-f", "run"}); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, e.err.String())
	}
	if d := cmp.Diff(wantRunLogs, e.out.String()); d != "" {
		t.Errorf("output (-want +got):\n%s", d)
	}
	if e.sleeps != len(e.frames) {
		t.Errorf("followed for %d looks of %d: it must end when the run ends, not before", e.sleeps, len(e.frames))
	}
}

// A follower prints each task while it runs: after each frame, what it printed so far.
func TestLogsFollowIsLive(t *testing.T) {
	w := newWorld(t, "run")
	var e testEnv
	var seen []string
	for _, f := range timeline(w) {
		e.frames = append(e.frames, func() {
			seen = append(seen, e.out.String())
			f()
		})
	}
	if code := Main(context.Background(), e.env(w), []string{"logs", "run", "--follow"}); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, e.err.String())
	}
	// Before frame 2 (clone's second line) the first line is out; before frame 3 both.
	if !strings.HasSuffix(seen[2], "[clone : write] cloned\n") {
		t.Errorf("before the second line of clone: %q", seen[2])
	}
	if !strings.HasSuffix(seen[4], "[flaky : try] try 0\n") {
		t.Errorf("while flaky's first attempt runs: %q", seen[4])
	}
}

// A CustomRun retry is a new pod: the logs show each attempt's pod in turn; a pod that is
// gone is said to be gone.
func TestLogsRunAttempts(t *testing.T) {
	w := newWorld(t, "run")
	one := task{name: "one", key: "one", steps: []string{"s"}}
	w.addPod(0, one)
	w.updatePod(0, running)
	w.logs.add(plan.PodName("run", 0), one.container("s"), line(1, "attempt 0"))
	w.logs.add(plan.PodName("run", 0), plan.ReporterContainer, report(1.5, plan.TaskState{Key: "one", Phase: plan.PhaseFailed, StartTime: mt(1), CompletionTime: mt(1)}))
	w.updatePod(0, terminate())
	w.updateCR(func(cr *v1beta1.CustomRun) {
		failed := cr.Status.DeepCopy()
		failed.MarkCustomRunFailed("Failed", "boom")
		cr.Status.RetriesStatus = append(cr.Status.RetriesStatus, *failed)
	})
	w.addPod(1, one)
	w.updatePod(1, running)
	w.logs.add(plan.PodName("run", 1), one.container("s"), line(3, "attempt 1"))
	w.logs.add(plan.PodName("run", 1), plan.ReporterContainer, report(3.5, plan.TaskState{Key: "one", Phase: plan.PhaseSucceeded, StartTime: mt(3), CompletionTime: mt(3)}))
	w.updatePod(1, terminate())
	w.updateCR(succeed)

	var e testEnv
	if code := Main(context.Background(), e.env(w), []string{"logs", "run"}); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, e.err.String())
	}
	if d := cmp.Diff(lines("[one : s] attempt 0", "", "[one : s] attempt 1", ""), e.out.String()); d != "" {
		t.Errorf("output (-want +got):\n%s", d)
	}

	must(t, w.kube.CoreV1().Pods(testNS).Delete(context.Background(), plan.PodName("run", 0), deleteNow))
	e = testEnv{}
	if code := Main(context.Background(), e.env(w), []string{"logs", "run"}); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, e.err.String())
	}
	if d := cmp.Diff(lines("[one : s] attempt 1", ""), e.out.String()); d != "" {
		t.Errorf("with attempt 0's pod gone (-want +got):\n%s", d)
	}
	if want := "pod run-pod of CustomRun run (attempt 0) is gone"; !strings.Contains(e.err.String(), want) {
		t.Errorf("stderr %q, want it to say %q", e.err.String(), want)
	}
}

// A run that failed says so on stderr, as tkn says a PipelineRun failed.
func TestLogsOfAFailedRun(t *testing.T) {
	w := newWorld(t, "run")
	w.updateCR(func(cr *v1beta1.CustomRun) {
		cr.Status.InitializeConditions()
		cr.Status.MarkCustomRunFailed("ValidationFailed", "spec.pipelineSpec: bad")
	})
	var e testEnv
	if code := Main(context.Background(), e.env(w), []string{"logs", "run", "-f"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if e.out.Len() != 0 || !strings.Contains(e.err.String(), "CustomRun run failed (ValidationFailed): spec.pipelineSpec: bad") {
		t.Errorf("stdout %q stderr %q", e.out.String(), e.err.String())
	}
}

// A run without its pod yet: nothing to show but that; -f waits for the pod, quietly.
func TestLogsBeforeThePod(t *testing.T) {
	w := newWorld(t, "run")
	w.updateCR(func(cr *v1beta1.CustomRun) { cr.Status.InitializeConditions() })
	var e testEnv
	if code := Main(context.Background(), e.env(w), []string{"logs", "run"}); code != 0 || e.out.Len() != 0 ||
		e.err.String() != "CustomRun run has no pod yet (-f waits for it)\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, e.out.String(), e.err.String())
	}
	e = testEnv{frames: []func(){func() {}, func() {}, func() { w.updateCR(succeed) }}}
	if code := Main(context.Background(), e.env(w), []string{"logs", "run", "-f"}); code != 0 || e.out.Len() != 0 || e.err.Len() != 0 {
		t.Errorf("-f: exit %d, stdout %q, stderr %q", code, e.out.String(), e.err.String())
	}
}

func TestLogsErrors(t *testing.T) {
	w := finishedRun(t)
	other := newWorld(t, "other")
	other.updateCR(func(*v1beta1.CustomRun) {})
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no run named", []string{"logs"}, 2, "logs needs the name of a CustomRun"},
		{"unknown flag", []string{"logs", "run", "--bogus"}, 2, "unknown flag: --bogus"},
		{"no such run", []string{"logs", "nope"}, 1, `CustomRun nope in namespace ns: customruns.tekton.dev "nope" not found`},
		{"no such task", []string{"logs", "run", "clone", "nope"}, 1, `CustomRun run has no pipeline task "nope"; its tasks: clone, flaky, slow, never, notify`},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e testEnv
			if code := Main(context.Background(), e.env(w), tc.args); code != tc.code || !strings.Contains(e.err.String(), tc.want) {
				t.Errorf("exit %d (want %d), stderr %q, want it to contain %q", code, tc.code, e.err.String(), tc.want)
			}
		})
	}
}

// Reading a log again takes only what is new, from the second of the last line held.
func TestContainerLogRefresh(t *testing.T) {
	src := &fakeLogs{}
	src.add("p", "c", line(1.1, "a"), line(1.5, "b"))
	var l containerLog
	must(t, l.refresh(context.Background(), src, testNS, "p", "c"))
	src.add("p", "c", line(1.7, "c"), line(2.2, "d"))
	must(t, l.refresh(context.Background(), src, testNS, "p", "c"))
	must(t, l.refresh(context.Background(), src, testNS, "p", "c"))
	var got []string
	for _, x := range l.lines {
		got = append(got, x.Text)
	}
	if d := cmp.Diff([]string{"a", "b", "c", "d"}, got); d != "" {
		t.Errorf("lines (-want +got):\n%s", d)
	}
}

func TestParseTimestamped(t *testing.T) {
	got, err := ParseTimestamped(strings.NewReader("2026-01-02T10:00:01.5Z hello world\nno stamp\n2026-01-02T10:00:02Z \n2026-01-02T10:00:03Z last"))
	must(t, err)
	want := []LogLine{line(1.5, "hello world"), line(1.5, "no stamp"), line(2, ""), line(3, "last")}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
