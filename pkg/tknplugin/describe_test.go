package tknplugin

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// describedRun is the test run as the controller leaves it: every child TaskRun's status,
// the summary, and the skipped task's TaskRun deleted.
func describedRun(t *testing.T) *world {
	w := finishedRun(t)
	ctx := context.Background()
	status := func(key string, c apis.Condition, start, end float64, retries int, results ...v1.TaskRunResult) {
		tr, err := w.tekton.TektonV1().TaskRuns(testNS).Get(ctx, "run-"+key, metav1.GetOptions{})
		must(t, err)
		tr.Status.Conditions = duckv1.Conditions{c}
		tr.Status.StartTime, tr.Status.CompletionTime = mt(start), mt(end)
		tr.Status.PodName = "run-pod"
		tr.Status.Results = results
		for range retries {
			tr.Status.RetriesStatus = append(tr.Status.RetriesStatus, v1.TaskRunStatus{})
		}
		_, err = w.tekton.TektonV1().TaskRuns(testNS).UpdateStatus(ctx, tr, metav1.UpdateOptions{})
		must(t, err)
	}
	ok := condition(corev1.ConditionTrue, "Succeeded")
	status("clone", ok, 1, 1.3, 0, v1.TaskRunResult{Name: "commit", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("abc123")})
	status("flaky", ok, 2.5, 3.3, 1)
	status("slow", ok, 5.2, 5.8, 1, v1.TaskRunResult{Name: "files", Type: v1.ResultsTypeArray, Value: *v1.NewStructuredValues("a", "b")})
	status("notify", ok, 8, 8.2, 0)
	must(t, w.tekton.TektonV1().TaskRuns(testNS).Delete(ctx, "run-never", metav1.DeleteOptions{}))
	w.updateCR(func(cr *v1beta1.CustomRun) {
		cr.Spec.Params = v1beta1.Params{{Name: "greeting", Value: *v1beta1.NewStructuredValues("hello")}}
		cr.Spec.Workspaces = []v1beta1.WorkspaceBinding{{Name: "source", EmptyDir: &corev1.EmptyDirVolumeSource{}}}
		cr.Status.Results = []v1beta1.CustomRunResult{{Name: "summary", Value: "readme=4"}}
		s := observe.Summary{PipelineName: "pipeline", PodName: "run-pod", TaskRuns: []observe.TaskSummary{
			{Name: "run-clone", PipelineTaskName: "clone", MemberOf: "tasks", State: plan.PhaseSucceeded, Reason: "Succeeded"},
			{Name: "run-flaky", PipelineTaskName: "flaky", MemberOf: "tasks", State: plan.PhaseSucceeded, Reason: "Succeeded"},
			{Name: "run-slow", PipelineTaskName: "slow", MemberOf: "tasks", State: plan.PhaseSucceeded, Reason: "Succeeded"},
			{Name: "run-never", PipelineTaskName: "never", MemberOf: "tasks", State: plan.PhaseSkipped, Reason: string(v1.WhenExpressionsSkip)},
			{Name: "run-notify", PipelineTaskName: "notify", MemberOf: "finally", State: plan.PhaseSucceeded, Reason: "Succeeded"},
		}, SkippedTasks: []v1.SkippedTask{{Name: "empty", Reason: v1.EmptyArrayInMatrixParams}}}
		raw, err := s.Encode()
		must(t, err)
		cr.Status.ExtraFields = raw
	})
	_, err := w.tekton.TektonV1beta1().CustomRuns(testNS).Update(ctx, func() *v1beta1.CustomRun {
		cr := w.cr()
		cr.Labels = map[string]string{"tekton.dev/pipelineRun": "outer", "tekton.dev/pipelineTask": "in-one-pod"}
		cr.Spec.Params = v1beta1.Params{{Name: "greeting", Value: *v1beta1.NewStructuredValues("hello")}}
		cr.Spec.Workspaces = []v1beta1.WorkspaceBinding{{Name: "source", EmptyDir: &corev1.EmptyDirVolumeSource{}}}
		return cr
	}(), metav1.UpdateOptions{})
	must(t, err)
	w.updatePod(0, func(p *corev1.Pod) { p.Spec.NodeName = "node-1" })
	return w
}

func TestDescribe(t *testing.T) {
	w := describedRun(t)
	var e testEnv
	if code := Main(context.Background(), e.env(w), []string{"describe", "run", "-n", testNS}); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, e.err.String())
	}
	want := lines(
		"Name:          run",
		"Namespace:     ns",
		"Pipeline:      pipeline",
		"PipelineRun:   outer (pipeline task in-one-pod)",
		"",
		"Status",
		"",
		"STARTED                DURATION   STATUS      REASON",
		"2026-01-02T10:00:00Z   9s         Succeeded   Succeeded",
		"",
		"Message",
		"",
		"Tasks Completed: 3 (Failed: 0, Cancelled 0), Skipped: 1",
		"",
		"Params",
		"",
		" NAME       VALUE",
		" greeting   hello",
		"",
		"Workspaces",
		"",
		" NAME     SUB PATH   WORKSPACE BINDING",
		" source   ---        EmptyDir (emptyDir=)",
		"",
		"Results",
		"",
		" NAME      VALUE",
		" summary   readme=4",
		"",
		"TaskRuns",
		"",
		" NAME         TASK     STARTED                DURATION   STATUS      REASON      RETRIES",
		" run-clone    clone    2026-01-02T10:00:01Z   0s         Succeeded   Succeeded   0",
		" run-flaky    flaky    2026-01-02T10:00:02Z   1s         Succeeded   Succeeded   1",
		" run-slow     slow     2026-01-02T10:00:05Z   0s         Succeeded   Succeeded   1",
		" run-notify   notify   2026-01-02T10:00:08Z   0s         Succeeded   Succeeded   0",
		"",
		"TaskRun Results",
		"",
		" TASKRUN     NAME     VALUE",
		" run-clone   commit   abc123",
		` run-slow    files    ["a","b"]`,
		"",
		"Skipped Tasks",
		"",
		" NAME    REASON",
		" never   When Expressions evaluated to false",
		" empty   Matrix Parameters have an empty array",
		"",
		"Pod",
		"",
		" NAME      PHASE       NODE     CONTAINERS",
		" run-pod   Succeeded   node-1   8 (8 terminated)",
	)
	if d := cmp.Diff(want, e.out.String()); d != "" {
		t.Errorf("output (-want +got):\n%s", d)
	}
}

// While the run goes on: a pending TaskRun, a running one, and a skipped task whose
// never-run TaskRun is still there (it goes once recorded) shows as skipped, not pending.
func TestDescribeRunning(t *testing.T) {
	w := newWorld(t, "run")
	w.addPod(0, clone, never, notify)
	w.updatePod(0, running)
	ctx := context.Background()
	tr, err := w.tekton.TektonV1().TaskRuns(testNS).Get(ctx, "run-clone", metav1.GetOptions{})
	must(t, err)
	tr.Status.Conditions = duckv1.Conditions{condition(corev1.ConditionUnknown, "Running")}
	tr.Status.StartTime = mt(1)
	_, err = w.tekton.TektonV1().TaskRuns(testNS).UpdateStatus(ctx, tr, metav1.UpdateOptions{})
	must(t, err)
	w.updateCR(func(cr *v1beta1.CustomRun) {
		cr.Status.MarkCustomRunRunning("Running", "Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 2, Skipped: 1")
		s := observe.Summary{PipelineName: "pipeline", PodName: "run-pod", TaskRuns: []observe.TaskSummary{
			{Name: "run-clone", PipelineTaskName: "clone", State: plan.PhaseRunning},
			{Name: "run-never", PipelineTaskName: "never", State: plan.PhaseSkipped, Reason: string(v1.WhenExpressionsSkip)},
			{Name: "run-notify", PipelineTaskName: "notify", State: plan.PhasePending},
		}}
		raw, err := s.Encode()
		must(t, err)
		cr.Status.ExtraFields = raw
	})
	var e testEnv
	if code := Main(context.Background(), e.env(w), []string{"describe", "run"}); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, e.err.String())
	}
	want := lines(
		"Name:        run",
		"Namespace:   ns",
		"Pipeline:    pipeline",
		"",
		"Status",
		"",
		"STARTED                DURATION   STATUS    REASON",
		"2026-01-02T10:00:00Z   ---        Running   Running",
		"",
		"Message",
		"",
		"Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 2, Skipped: 1",
		"",
		"TaskRuns",
		"",
		" NAME         TASK     STARTED                DURATION   STATUS    REASON    RETRIES",
		" run-clone    clone    2026-01-02T10:00:01Z   ---        Running   Running   0",
		" run-notify   notify   ---                    ---        Pending             0",
		"",
		"Skipped Tasks",
		"",
		" NAME    REASON",
		" never   When Expressions evaluated to false",
		"",
		"Pod",
		"",
		" NAME      PHASE     NODE   CONTAINERS",
		" run-pod   Running   ---    5 (5 running)",
	)
	if d := cmp.Diff(want, e.out.String()); d != "" {
		t.Errorf("output (-want +got):\n%s", d)
	}
}
