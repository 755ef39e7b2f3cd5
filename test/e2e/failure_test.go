//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

const failingSpec = `
pipelineSpec:
  tasks:
  - name: ok
    taskSpec:
      steps:
      - {name: hi, image: ` + busybox + `, script: echo ok}
  - name: broken
    runAfter: [ok]
    taskSpec:
      steps:
      - {name: fail, image: ` + busybox + `, script: 'echo failing; exit 1'}
  - name: dependant
    runAfter: [broken]
    taskSpec:
      steps:
      - {name: never, image: ` + busybox + `, script: echo this must not run}
  finally:
  - name: cleanup
    taskSpec:
      steps:
      - {name: tidy, image: ` + busybox + `, script: echo cleanup ran}
`

// A task exits 1: the CustomRun fails, that TaskRun fails, the task after it is skipped
// (and, as in Tekton, has no TaskRun), and the finally task still runs and succeeds.
func TestTaskFails(t *testing.T) {
	e := newEnv(t)
	cr := e.createCustomRun(inlineCustomRun(t, "fails-", failingSpec))
	cr, took := e.waitCustomRunDone(cr.Name, runLimit)
	t.Logf("CustomRun %s done after %s", cr.Name, took.Round(time.Millisecond))
	if c := cr.Status.GetCondition(apis.ConditionSucceeded); !c.IsFalse() || c.Reason != string(v1beta1.CustomRunReasonFailed) {
		t.Errorf("CustomRun %s: want False/%s, got %s", cr.Name, v1beta1.CustomRunReasonFailed, cluster.ConditionString(c))
	}
	pod := e.onePod(cr.Name)
	// Tekton makes no TaskRun for a skipped task: the dependant's, which never ran, goes
	// once the CustomRun records the task as skipped.
	e.poll(30*time.Second, "the skipped task's never-run TaskRun to be deleted", func() (bool, string) {
		_, there := e.childTaskRuns(cr.Name)["dependant"]
		return !there, "still there"
	})
	trs := e.childTaskRuns(cr.Name)
	if len(trs) != 3 {
		t.Errorf("want 3 child TaskRuns (none for the skipped task), got %d", len(trs))
	}
	summary := observe.DecodeSummary(cr.Status.ExtraFields)
	check := func(task string, status, reason string, state plan.Phase) *v1.TaskRun {
		t.Helper()
		tr, ok := trs[task]
		if !ok {
			t.Fatalf("no child TaskRun for %s", task)
		}
		c := tr.Status.GetCondition(apis.ConditionSucceeded)
		if c == nil || string(c.Status) != status || c.Reason != reason {
			t.Errorf("TaskRun %s (%s): want %s/%s, got %s", tr.Name, task, status, reason, cluster.ConditionString(c))
		}
		if ts, _ := summary.Task(tr.Name); ts.State != state {
			t.Errorf("TaskRun %s (%s): extraFields state %q, want %q", tr.Name, task, ts.State, state)
		}
		return tr
	}
	check("ok", "True", string(v1.TaskRunReasonSuccessful), plan.PhaseSucceeded)
	broken := check("broken", "False", string(v1.TaskRunReasonFailed), plan.PhaseFailed)
	if len(broken.Status.Steps) != 1 || broken.Status.Steps[0].Terminated == nil || broken.Status.Steps[0].Terminated.ExitCode != 1 {
		t.Errorf("TaskRun %s: want its one step terminated with exit code 1, got %+v", broken.Name, broken.Status.Steps)
	}
	if broken.Status.CompletionTime == nil {
		t.Errorf("TaskRun %s: no completion time", broken.Name)
	}
	skipped := false
	for _, ts := range summary.TaskRuns {
		if ts.PipelineTaskName == "dependant" {
			skipped = ts.State == plan.PhaseSkipped && ts.Reason != ""
		}
	}
	if !skipped {
		t.Errorf("extraFields %+v: want dependant recorded as Skipped, with the reason", summary.TaskRuns)
	}
	p, err := plan.Decode([]byte(pod.Annotations[plan.AnnotationPlan]))
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range p.Tasks {
		if pt.PipelineTask != "dependant" {
			continue
		}
		for _, c := range pt.Steps {
			if log := e.containerLog(pod.Name, c); strings.Contains(log, "this must not run") {
				t.Errorf("the skipped task's step ran: %q", log)
			}
		}
	}
	cleanup := check("cleanup", "True", string(v1.TaskRunReasonSuccessful), plan.PhaseSucceeded)
	if cleanup.Labels[pipeline.MemberOfLabelKey] != "finally" {
		t.Errorf("TaskRun %s: label %s = %q, want finally", cleanup.Name, pipeline.MemberOfLabelKey, cleanup.Labels[pipeline.MemberOfLabelKey])
	}
	if len(cleanup.Status.Steps) != 1 {
		t.Fatalf("TaskRun %s: want one step, got %+v", cleanup.Name, cleanup.Status.Steps)
	}
	if log := e.containerLog(pod.Name, cleanup.Status.Steps[0].Container); !strings.Contains(log, "cleanup ran") {
		t.Errorf("finally task's log %q does not say it ran", log)
	}
}

const sleepySpec = `
pipelineSpec:
  tasks:
  - name: sleepy
    taskSpec:
      steps:
      - {name: sleep, image: ` + busybox + `, script: sleep 300}
  - name: later
    runAfter: [sleepy]
    taskSpec:
      steps:
      - {name: never, image: ` + busybox + `, script: echo this must not run}
`

// waitTaskRunning waits until the pipeline task runs in the pod, as the CustomRun says.
func (e *env) waitTaskRunning(crName, task string) {
	e.t.Helper()
	e.poll(2*time.Minute, "pipeline task "+task+" to run", func() (bool, string) {
		cr, err := clients.Tekton.TektonV1beta1().CustomRuns(e.ns).Get(e.ctx, crName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if cr.IsDone() {
			e.t.Fatalf("CustomRun %s ended before %s ran: %s", crName, task, cluster.ConditionString(cr.Status.GetCondition(apis.ConditionSucceeded)))
		}
		for _, ts := range observe.DecodeSummary(cr.Status.ExtraFields).TaskRuns {
			if ts.PipelineTaskName == task {
				return ts.State == plan.PhaseRunning, "state " + string(ts.State)
			}
		}
		return false, "not in extraFields: " + string(cr.Status.ExtraFields.Raw)
	})
}

// checkEndedRun checks a cancelled or timed-out run: its pod goes, and none of its child
// TaskRuns is left running.
func (e *env) checkEndedRun(cr *v1beta1.CustomRun, runningTask string) {
	e.t.Helper()
	podName := observe.DecodeSummary(cr.Status.ExtraFields).PodName
	if podName == "" {
		e.t.Fatalf("CustomRun %s: no podName in extraFields", cr.Name)
	}
	// The controller deletes the pod as it ends the run; allow for the write to land.
	e.poll(10*time.Second, "pod "+podName+" to be deleted", func() (bool, string) { return podGoneOrGoing(e, podName) })
	trs := e.childTaskRuns(cr.Name)
	if len(trs) != 2 {
		e.t.Errorf("want 2 child TaskRuns, got %d", len(trs))
	}
	for task, tr := range trs {
		if !taskRunDone(tr) {
			e.t.Errorf("TaskRun %s (%s) left %s", tr.Name, task, cluster.ConditionString(tr.Status.GetCondition(apis.ConditionSucceeded)))
		}
		if c := tr.Status.GetCondition(apis.ConditionSucceeded); c.IsTrue() {
			e.t.Errorf("TaskRun %s (%s) Succeeded in an ended run", tr.Name, task)
		}
		if tr.Status.CompletionTime == nil {
			e.t.Errorf("TaskRun %s (%s): no completion time", tr.Name, task)
		}
	}
	if tr := trs[runningTask]; tr != nil {
		if c := tr.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Reason != string(v1.TaskRunReasonCancelled) {
			e.t.Errorf("TaskRun %s (%s, running when the run ended): want reason %s, got %s", tr.Name, runningTask, v1.TaskRunReasonCancelled, cluster.ConditionString(c))
		}
	}
}

// Cancelling a running CustomRun (spec.status RunCancelled, as Tekton does when a
// PipelineRun is cancelled or times out) ends it promptly, deletes its pod, and ends its
// TaskRuns.
func TestCancel(t *testing.T) {
	e := newEnv(t)
	cr := e.createCustomRun(inlineCustomRun(t, "cancel-", sleepySpec))
	e.waitTaskRunning(cr.Name, "sleepy")

	patch := `{"spec":{"status":"` + string(v1beta1.CustomRunSpecStatusCancelled) + `","statusMessage":"cancelled by the e2e test"}}`
	start := time.Now()
	if _, err := clients.Tekton.TektonV1beta1().CustomRuns(e.ns).Patch(e.ctx, cr.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	cr, _ = e.waitCustomRunDone(cr.Name, time.Minute)
	took := time.Since(start)
	t.Logf("CustomRun %s done %s after the cancel", cr.Name, took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("cancelling took %s, want under 30s", took.Round(time.Millisecond))
	}
	if c := cr.Status.GetCondition(apis.ConditionSucceeded); !c.IsFalse() || c.Reason != string(v1beta1.CustomRunReasonCancelled) {
		t.Errorf("CustomRun %s: want False/%s, got %s", cr.Name, v1beta1.CustomRunReasonCancelled, cluster.ConditionString(c))
	}
	e.checkEndedRun(cr, "sleepy")
}

// A CustomRun with spec.timeout that runs longer times out.
func TestTimeout(t *testing.T) {
	e := newEnv(t)
	cr := inlineCustomRun(t, "timeout-", sleepySpec)
	cr.Spec.Timeout = &metav1.Duration{Duration: 5 * time.Second}
	start := time.Now()
	cr = e.createCustomRun(cr)
	cr, _ = e.waitCustomRunDone(cr.Name, time.Minute)
	took := time.Since(start)
	t.Logf("CustomRun %s done %s after creation", cr.Name, took.Round(time.Millisecond))
	if took > 40*time.Second {
		t.Errorf("a 5s timeout ended the run after %s, want within 40s", took.Round(time.Millisecond))
	}
	if took < 5*time.Second {
		t.Errorf("a 5s timeout ended the run after %s already", took.Round(time.Millisecond))
	}
	c := cr.Status.GetCondition(apis.ConditionSucceeded)
	if !c.IsFalse() || c.Reason != string(v1beta1.CustomRunReasonTimedOut) {
		t.Errorf("CustomRun %s: want False/%s, got %s", cr.Name, v1beta1.CustomRunReasonTimedOut, cluster.ConditionString(c))
	}
	e.checkEndedRun(cr, "sleepy")
}
