//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

// plugin builds cmd/tkn-pipelineinpod into a directory of the test's own (which a tkn
// run puts on PATH to find it as `tkn pipelineinpod`); Go's build cache makes the builds
// after the first a link.
func plugin(t *testing.T) string {
	t.Helper()
	if p, ok := built[t.Name()]; ok {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(t.TempDir(), "tkn-pipelineinpod")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", path, "./cmd/tkn-pipelineinpod")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the tkn plugin: %v\n%s", err, out)
	}
	built[t.Name()] = path
	return path
}

// built holds each test's plugin binary (tests of this package run one at a time).
var built = map[string]string{}

// runPlugin runs the plugin with args (KUBECONFIG from the environment) and returns its
// stdout and stderr; it fails the test unless the exit code is want.
func runPlugin(ctx context.Context, t *testing.T, want int, args ...string) (string, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, plugin(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var exited *exec.ExitError
	if errors.As(err, &exited) {
		code = exited.ExitCode()
	} else if err != nil {
		t.Fatalf("tkn-pipelineinpod %s: %v", strings.Join(args, " "), err)
	}
	if code != want {
		t.Fatalf("tkn-pipelineinpod %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// `start -f` runs a PipelineRun file of examples/ unchanged in one pod, and follows it:
// examples/pipelinerun.yaml, whose PipelineInPod task joins the same pod as the
// Pipeline it names (the Pipeline and its Task are applied first, as for Tekton).
func TestPluginStartPipelineRunFile(t *testing.T) {
	e := newEnv(t)
	e.applyExample("clone-build-test.yaml")
	ctx, cancel := context.WithTimeout(e.ctx, runLimit)
	defer cancel()
	out, _ := runPlugin(ctx, t, 0, "start", "-f", examplePath("pipelinerun.yaml"), "--follow", "-n", e.ns)
	t.Logf("tkn pipelineinpod start --follow:\n%s", out)
	m := regexp.MustCompile(`(?m)^CustomRun started: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no `CustomRun started: NAME` line")
	}
	cr, err := clients.Tekton.TektonV1beta1().CustomRuns(e.ns).Get(e.ctx, m[1], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !cr.IsDone() {
		t.Errorf("start --follow ended before CustomRun %s did: %s", cr.Name, cluster.ConditionString(cr.Status.GetCondition(apis.ConditionSucceeded)))
	}
	e.checkSucceeded(cr)
	const summary = "readme=4 code=4"
	e.checkResults(cr, map[string]string{})
	pod := e.onePod(cr.Name)
	p, err := plan.Decode([]byte(pod.Annotations[plan.AnnotationPlan]))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tasks) != 6 {
		t.Errorf("pod %s runs %d tasks, want the 5 of clone-build-test and after", pod.Name, len(p.Tasks))
	}
	// The PipelineInPod task's inner tasks are flattened under its name, as their
	// TaskRuns' tekton.dev/pipelineTask labels say.
	for _, want := range []string{
		"[in-one-pod-report : report] " + summary,
		"[after : show] inner pipeline said: " + summary,
		"[in-one-pod-notify : notify] pipeline finished: Succeeded",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("the followed logs do not show %q", want)
		}
	}
}

// retrySpec: three tasks in a row, one retried (its first attempt fails,
// its second passes: a file in the shared workspace remembers the first), one skipped by
// its when expressions. The second attempt waits a second before it writes, so its lines
// come in a later second than the first attempt's end: the logs can then tell the two
// attempts apart exactly (they share the step's container; the reported step times have
// whole seconds).
const retrySpec = `
pipelineSpec:
  params: [{name: delay, default: "0"}]
  workspaces: [{name: shared}]
  tasks:
  - name: first
    taskSpec:
      steps:
      - {name: hello, image: ` + busybox + `, script: 'sleep $(params.delay); echo "first: hello"'}
      - {name: bye, image: ` + busybox + `, script: 'echo "first: bye"'}
  - name: flaky
    runAfter: [first]
    retries: 1
    workspaces: [{name: shared, workspace: shared}]
    taskSpec:
      workspaces: [{name: shared}]
      steps:
      - name: try
        image: ` + busybox + `
        script: |
          if [ -f $(workspaces.shared.path)/tried ]; then
            sleep 1
            echo "flaky: second attempt passes"
            exit 0
          fi
          touch $(workspaces.shared.path)/tried
          echo "flaky: first attempt fails"
          exit 1
  - name: skipped
    runAfter: [flaky]
    when: [{input: "$(params.delay)", operator: in, values: ["never"]}]
    taskSpec:
      steps:
      - {name: never, image: ` + busybox + `, script: 'echo "skipped: this must not run"'}
`

// wantRetryLogs is what the plugin's logs print for retrySpec: each task's steps in
// order, both attempts of flaky, a blank line after each step, nothing of the skipped
// task, of the reporter or of any other container.
const wantRetryLogs = `[first : hello] first: hello

[first : bye] first: bye

[flaky : try] flaky: first attempt fails

[flaky : try] flaky: second attempt passes

`

// retryRun creates a run of retrySpec whose first step sleeps delay seconds.
func (e *env) retryRun(delay string) *v1beta1.CustomRun {
	e.t.Helper()
	cr := inlineCustomRun(e.t, "retry-", retrySpec, stringParam("delay", delay))
	cr.Spec.Workspaces = []v1beta1.WorkspaceBinding{{Name: "shared", EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	return e.createCustomRun(cr)
}

// The plugin on a finished run with a retried and a skipped task: `logs` prints exactly
// each task's step output, in order, every attempt; `describe` shows every child
// TaskRun, the skipped task and why, and the pod; `tkn taskrun list` shows no TaskRun
// for the skipped task (as for a Tekton PipelineRun) and no failed one.
func TestPluginLogsDescribeAndSkipped(t *testing.T) {
	e := newEnv(t)
	cr := e.retryRun("0")
	cr, _ = e.waitCustomRunDone(cr.Name, runLimit)
	e.checkSucceeded(cr)
	pod := e.onePod(cr.Name)

	out, errOut := runPlugin(e.ctx, t, 0, "logs", cr.Name, "-n", e.ns)
	t.Logf("tkn pipelineinpod logs %s:\n%s", cr.Name, out)
	if out != wantRetryLogs {
		t.Errorf("logs:\n%s\nwant exactly:\n%s", out, wantRetryLogs)
	}
	if errOut != "" {
		t.Errorf("logs stderr: %s", errOut)
	}
	one, _ := runPlugin(e.ctx, t, 0, "logs", cr.Name, "flaky", "-n", e.ns)
	if want := "[flaky : try] flaky: first attempt fails\n\n[flaky : try] flaky: second attempt passes\n\n"; one != want {
		t.Errorf("logs of flaky alone:\n%s\nwant:\n%s", one, want)
	}

	// The skipped task's TaskRun, which never ran, goes once the run records the skip.
	e.poll(30*time.Second, "the skipped task's TaskRun to be deleted", func() (bool, string) {
		_, there := e.childTaskRuns(cr.Name)["skipped"]
		return !there, "still there"
	})
	trs := e.childTaskRuns(cr.Name)
	flaky, ok := trs["flaky"]
	if !ok || len(trs) != 2 {
		t.Fatalf("child TaskRuns %v: want first and flaky", trs)
	}
	// What the Dashboard reads: every status, the retried attempt's included, names the
	// pod and, per step, a container of it.
	for i, s := range append([]v1.TaskRunStatus{flaky.Status}, flaky.Status.RetriesStatus...) {
		if s.PodName != pod.Name {
			t.Errorf("TaskRun %s status %d: podName %q, want %q", flaky.Name, i, s.PodName, pod.Name)
		}
		for _, st := range s.Steps {
			if !podHasContainer(pod, st.Container) {
				t.Errorf("TaskRun %s status %d: step %s names container %q, not in pod %s", flaky.Name, i, st.Name, st.Container, pod.Name)
			}
		}
	}
	if len(flaky.Status.RetriesStatus) != 1 {
		t.Errorf("TaskRun %s: %d retriesStatus entries, want 1", flaky.Name, len(flaky.Status.RetriesStatus))
	}

	desc, _ := runPlugin(e.ctx, t, 0, "describe", cr.Name, "-n", e.ns)
	t.Logf("tkn pipelineinpod describe %s:\n%s", cr.Name, desc)
	for _, re := range []string{
		`(?m)^Name:\s+` + cr.Name + `$`,
		`(?m)^\s*\S+\s+\S+\s+Succeeded\s+Succeeded\s*$`,
		`(?m)^ ` + trs["first"].Name + `\s+first\s+\S+\s+\S+\s+Succeeded\s+Succeeded\s+0$`,
		`(?m)^ ` + flaky.Name + `\s+flaky\s+\S+\s+\S+\s+Succeeded\s+Succeeded\s+1$`,
		`(?m)^Skipped Tasks$`,
		`(?m)^ skipped\s+When Expressions evaluated to false$`,
		`(?m)^ ` + pod.Name + `\s+(Succeeded|Running)\s+`,
	} {
		if !regexp.MustCompile(re).MatchString(desc) {
			t.Errorf("describe does not match %s", re)
		}
	}

	list := tkn(t, "taskrun", "list", "-n", e.ns)
	t.Logf("tkn taskrun list:\n%s", list)
	for _, tr := range trs {
		if !regexp.MustCompile(`(?m)^` + tr.Name + `\s.*\sSucceeded\s*$`).MatchString(list) {
			t.Errorf("tkn taskrun list does not show %s Succeeded", tr.Name)
		}
	}
	if strings.Contains(list, "Failed") || strings.Contains(list, "-skipped") {
		t.Errorf("tkn taskrun list shows a failed or skipped TaskRun; Tekton has none for a skipped task")
	}
	if s := observe.DecodeSummary(cr.Status.ExtraFields); !recordedSkipped(s, "skipped") {
		t.Errorf("extraFields %+v: want the skipped task recorded as Skipped", s.TaskRuns)
	}

	// tkn finds the plugin on PATH and runs it as `tkn pipelineinpod`.
	bin, err := exec.LookPath("tkn")
	if err != nil {
		bin = filepath.Join(clusterDir(), "bin", "tkn")
	}
	cmd := exec.CommandContext(e.ctx, bin, "pipelineinpod", "logs", cr.Name, "-n", e.ns)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(plugin(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
	viaTkn, err := cmd.Output()
	if err != nil {
		t.Fatalf("tkn pipelineinpod logs: %v", err)
	}
	if string(viaTkn) != wantRetryLogs {
		t.Errorf("tkn pipelineinpod logs:\n%s\nwant exactly:\n%s", viaTkn, wantRetryLogs)
	}
}

func recordedSkipped(s observe.Summary, task string) bool {
	for _, ts := range s.TaskRuns {
		if ts.PipelineTaskName == task {
			return ts.State == plan.PhaseSkipped && ts.Reason == string(v1.WhenExpressionsSkip)
		}
	}
	return false
}

// `logs -f` on a live run prints the same as on the finished run, and ends when the run
// ends, not before nor long after.
func TestPluginLogsFollow(t *testing.T) {
	e := newEnv(t)
	cr := e.retryRun("5")
	// Wait for the pod to exist, so the follower starts on a live run.
	e.poll(runLimit, "the run's pod", func() (bool, string) {
		return len(e.podsOf(cr.Name)) == 1, "no pod yet"
	})
	ctx, cancel := context.WithTimeout(e.ctx, runLimit)
	defer cancel()
	start := time.Now()
	out, _ := runPlugin(ctx, t, 0, "logs", "-f", cr.Name, "-n", e.ns)
	ended := time.Now()
	got, err := clients.Tekton.TektonV1beta1().CustomRuns(e.ns).Get(e.ctx, cr.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsDone() {
		t.Fatalf("logs -f ended after %s, before the run did: %s", ended.Sub(start), cluster.ConditionString(got.Status.GetCondition(apis.ConditionSucceeded)))
	}
	if c := got.Status.GetCondition(apis.ConditionSucceeded); c.LastTransitionTime.Inner.Add(30 * time.Second).Before(ended) {
		t.Errorf("logs -f ended at %s, long after the run did (%s)", ended, c.LastTransitionTime.Inner)
	}
	if out != wantRetryLogs {
		t.Errorf("logs -f:\n%s\nwant exactly:\n%s", out, wantRetryLogs)
	}
}
