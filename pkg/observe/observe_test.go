package observe

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time { t := metav1.NewTime(t0.Add(d)); return &t }

func managedTaskRun(name string) *v1.TaskRun {
	m := TaskRunManagedBy
	return &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.TaskRunSpec{ManagedBy: &m, TaskSpec: &v1.TaskSpec{Steps: []v1.Step{{Name: "build"}}}}}
}

var build = plan.Task{Key: "build", PipelineTask: "build", TaskRun: "run-build", Steps: []string{"step-build-0"}}

func condOf(s v1.TaskRunStatus) string {
	c := s.GetCondition(apis.ConditionSucceeded)
	if c == nil {
		return ""
	}
	return string(c.Status) + "/" + c.Reason
}

// A task retried inside the pod shows its failed attempts in retriesStatus; a status of
// an earlier attempt of the CustomRun (another pod) is archived, not overwritten.
func TestRetriesStatus(t *testing.T) {
	exit1 := int32(1)
	failedAttempt := plan.TaskState{Key: "build", Phase: plan.PhaseFailed, Reason: "Failed", Message: "boom", StartTime: at(0), CompletionTime: at(time.Second),
		Steps: []plan.StepState{{Name: "build", Container: "step-build-0", ExitCode: &exit1, StartTime: at(0), CompletionTime: at(time.Second)}}}
	st := plan.TaskState{Key: "build", Phase: plan.PhaseSucceeded, StartTime: at(0), CompletionTime: at(3 * time.Second), RetryCount: 1, Attempts: []plan.TaskState{failedAttempt}}

	earlier := managedTaskRun("run-build")
	earlier.Status.PodName = "run-pod"
	earlier.Status.StartTime = at(-time.Minute)
	earlier.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "TaskRunCancelled"})

	for _, tc := range []struct {
		name     string
		tr       *v1.TaskRun
		podName  string
		wantPods []string
	}{
		{name: "first attempt", tr: managedTaskRun("run-build"), podName: "run-pod", wantPods: []string{"run-pod"}},
		{name: "second attempt of the CustomRun", tr: earlier, podName: "run-pod-retry1", wantPods: []string{"run-pod", "run-pod-retry1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Tasks: []plan.Task{build}, PodName: tc.podName, Report: map[string]plan.TaskState{"build": st},
				TaskRuns: map[string]*v1.TaskRun{"run-build": tc.tr}, Now: *at(time.Hour), Bounds: DefaultBounds}
			o := Observe(in)
			s := o.Tasks[0].Status
			var pods []string
			for _, r := range s.RetriesStatus {
				pods = append(pods, r.PodName)
			}
			if diff := cmp.Diff(tc.wantPods, pods); diff != "" || condOf(s) != "True/Succeeded" || s.PodName != tc.podName {
				t.Errorf("%s podName %q retries (-want +got)\n%s", condOf(s), s.PodName, diff)
			}
			last := s.RetriesStatus[len(s.RetriesStatus)-1]
			if condOf(last) != "False/Failed" || last.Steps[0].Terminated.ExitCode != 1 {
				t.Errorf("in-pod attempt: %+v", last)
			}
			// Observing again what was written changes nothing.
			written := tc.tr.DeepCopy()
			written.Status = s
			in.TaskRuns = map[string]*v1.TaskRun{"run-build": written}
			if again := Observe(in).Tasks[0].Status; !equality.Semantic.DeepEqual(again, s) {
				t.Errorf("not a fixed point:\n%s", cmp.Diff(s, again))
			}
		})
	}
}

// Once final, a TaskRun's status is not taken back by a later, non-final report.
func TestFinalWins(t *testing.T) {
	tr := managedTaskRun("run-build")
	tr.Status.PodName = "run-pod"
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "TaskRunCancelled"})
	in := Input{Tasks: []plan.Task{build}, PodName: "run-pod", Report: map[string]plan.TaskState{"build": {Key: "build", Phase: plan.PhaseRunning, StartTime: at(0)}},
		TaskRuns: map[string]*v1.TaskRun{"run-build": tr}, Now: *at(time.Minute)}
	o := Observe(in)
	if got := condOf(o.Tasks[0].Status); got != "False/TaskRunCancelled" || o.Tasks[0].State != plan.PhaseCancelled {
		t.Errorf("got %s %s", got, o.Tasks[0].State)
	}
}

func TestPodFailure(t *testing.T) {
	tasks := []plan.Task{build, {Key: "test", PipelineTask: "test", TaskRun: "run-test", Steps: []string{"step-test-0"}, Sidecars: []string{"step-test-db"}}}
	pod := func(f func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run-pod", CreationTimestamp: *at(0)},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "step-pip-init", Image: "pip"}},
				Containers:     []corev1.Container{{Name: "step-build-0", Image: "golang"}, {Name: "step-test-0", Image: "golang"}, {Name: "step-test-db", Image: "postgres"}, {Name: plan.ReporterContainer, Image: "pip"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: *at(0)}}}}
		for _, c := range p.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
		}
		f(p)
		return p
	}
	set := func(name string, s corev1.ContainerState) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			for i := range p.Status.ContainerStatuses {
				if p.Status.ContainerStatuses[i].Name == name {
					p.Status.ContainerStatuses[i].State = s
				}
			}
		}
	}
	waiting := func(name, reason, msg string) func(*corev1.Pod) {
		return set(name, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}})
	}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		report  map[string]plan.TaskState
		bounds  Bounds
		now     time.Duration
		want    string // reason, "" for none
		culprit string
		message string
	}{
		{name: "healthy", pod: pod(func(*corev1.Pod) {})},
		{name: "image pull back-off", pod: pod(waiting("step-test-0", "ImagePullBackOff", "nope")), want: "TaskRunImagePullFailed", culprit: "test",
			message: `task "test" (TaskRun "run-test"): the step container "step-test-0" in TaskRun "run-test" cannot start (image "golang")`},
		{name: "image pull back-off within the bound", pod: pod(waiting("step-test-0", "ImagePullBackOff", "nope")), bounds: Bounds{ImagePullBackOff: time.Minute}, now: 30 * time.Second},
		{name: "image pull back-off past the bound", pod: pod(waiting("step-test-0", "ImagePullBackOff", "nope")), bounds: Bounds{ImagePullBackOff: time.Minute}, now: 2 * time.Minute, want: "TaskRunImagePullFailed", culprit: "test"},
		{name: "ErrImagePull is retried by the kubelet", pod: pod(waiting("step-build-0", "ErrImagePull", "x"))},
		{name: "invalid image name", pod: pod(waiting("step-build-0", "InvalidImageName", "x")), want: "TaskRunImagePullFailed", culprit: "build"},
		{name: "sidecar image", pod: pod(waiting("step-test-db", "ImagePullBackOff", "x")), want: "TaskRunImagePullFailed", culprit: "test", message: `the sidecar container "step-test-db"`},
		{name: "missing secret", pod: pod(waiting("step-build-0", "CreateContainerConfigError", `secret "creds" not found`)), want: "CreateContainerConfigError", culprit: "build", message: `secret \"creds\" not found`},
		{name: "subPath directory not there yet", pod: pod(waiting("step-build-0", "CreateContainerConfigError", "failed to create subPath directory"))},
		{name: "a finished task's container no longer matters", pod: pod(waiting("step-build-0", "ImagePullBackOff", "x")),
			report: map[string]plan.TaskState{"build": {Key: "build", Phase: plan.PhaseSucceeded}}},
		{name: "init container", pod: pod(func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "step-pip-init", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
		}), want: "TaskRunImagePullFailed", message: `init container "step-pip-init" of pod "run-pod" (image "pip")`},
		{name: "sidecar OOM", pod: pod(set("step-test-db", corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}})), want: "SidecarOOM", culprit: "test"},
		{name: "step gone, outcome not reported, within the grace", pod: pod(set("step-build-0", corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, FinishedAt: *at(0)}})),
			bounds: DefaultBounds, now: 30 * time.Second},
		{name: "step gone, outcome not reported, past the grace", pod: pod(set("step-build-0", corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, FinishedAt: *at(0)}})),
			bounds: DefaultBounds, now: 2 * time.Minute, want: "StepFailed", culprit: "build"},
		{name: "reporter died", pod: pod(set(plan.ReporterContainer, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, FinishedAt: *at(0)}})),
			bounds: DefaultBounds, now: 2 * time.Minute, want: "PodFailed"},
		{name: "pod ended early", pod: pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), want: "PodFailed", message: "tasks without one: build, test"},
		{name: "being deleted", pod: pod(func(p *corev1.Pod) { p.DeletionTimestamp = at(0) }), want: "PodDeleted"},
		{name: "being deleted by the taint manager", pod: pod(func(p *corev1.Pod) {
			p.DeletionTimestamp, p.Spec.NodeName = at(0), "node-1"
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager", Message: "Taint manager: deleting due to NoExecute taint"})
		}), want: "PodDeleted", message: `pod "run-pod" on node "node-1" is being deleted (DeletionByTaintManager: Taint manager: deleting due to NoExecute taint) before every task finished`},
		{name: "node unreachable", pod: pod(func(p *corev1.Pod) {
			p.Spec.NodeName, p.Status.Reason, p.Status.Message = "node-1", "NodeLost", "Node node-1 which was running pod run-pod is unresponsive"
		}), want: ReasonNodeLost, message: `pod "run-pod" on node "node-1": its node is unreachable (Node node-1 which was running pod run-pod is unresponsive); tasks without a final state: build, test`},
		{name: "about to be preempted", pod: pod(func(p *corev1.Pod) {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: corev1.PodReasonPreemptionByScheduler, Message: "preempted"})
		}), want: ReasonPodDisrupted, message: `pod "run-pod" is being terminated (PreemptionByScheduler: preempted)`},
		{name: "a disruption that did not happen", pod: pod(func(p *corev1.Pod) {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionFalse})
		})},
		{name: "all reported final: whatever the pod", pod: pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }),
			report: map[string]plan.TaskState{"build": {Key: "build", Phase: plan.PhaseFailed}, "test": {Key: "test", Phase: plan.PhaseSkipped}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := PodFailure(Input{Tasks: tasks, PodName: "run-pod", Pod: tc.pod, Report: tc.report, Now: *at(tc.now), Bounds: tc.bounds})
			got, culprit, msg := "", "", ""
			if e != nil {
				got, culprit, msg = e.Reason, e.Culprit, e.Message
			}
			if got != tc.want || culprit != tc.culprit || !strings.Contains(msg, tc.message) {
				t.Errorf("got %q culprit %q message %q; want %q %q containing %q", got, culprit, msg, tc.want, tc.culprit, tc.message)
			}
			if e != nil && !EndsPod(e.Reason) {
				t.Errorf("%s must end the pod", e.Reason)
			}
		})
	}
}

func TestPipelineResults(t *testing.T) {
	str := func(name, v string) v1.TaskRunResult {
		return v1.TaskRunResult{Name: name, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(v)}
	}
	outcome := func(pt string, s plan.Phase, results ...v1.TaskRunResult) TaskOutcome {
		o := TaskOutcome{Task: plan.Task{PipelineTask: pt}, State: s}
		o.Status.Results = results
		return o
	}
	spec := func(name, value string) v1.PipelineResult {
		return v1.PipelineResult{Name: name, Value: *v1.NewStructuredValues(value)}
	}
	for _, tc := range []struct {
		name     string
		spec     []v1.PipelineResult
		tasks    []TaskOutcome
		skipped  []v1.SkippedTask
		matrixed map[string]bool
		want     []v1beta1.CustomRunResult
		err      bool
	}{{
		name:  "string",
		spec:  []v1.PipelineResult{spec("r", "$(tasks.a.results.x)-suffix")},
		tasks: []TaskOutcome{outcome("a", plan.PhaseSucceeded, str("x", "v"))},
		want:  []v1beta1.CustomRunResult{{Name: "r", Value: "v-suffix"}},
	}, {
		name:  "skipped task: left out",
		spec:  []v1.PipelineResult{spec("r", "$(tasks.a.results.x)"), spec("s", "$(tasks.b.results.y)")},
		tasks: []TaskOutcome{outcome("a", plan.PhaseSucceeded, str("x", "v")), outcome("b", plan.PhaseSkipped)},
		want:  []v1beta1.CustomRunResult{{Name: "r", Value: "v"}},
	}, {
		name:    "skipped before running (no TaskRun): left out",
		spec:    []v1.PipelineResult{spec("s", "$(tasks.m.results.y)")},
		skipped: []v1.SkippedTask{{Name: "m", Reason: v1.EmptyArrayInMatrixParams}},
	}, {
		name:     "matrix: arrays of the instances' results",
		spec:     []v1.PipelineResult{{Name: "all", Value: *v1.NewStructuredValues("$(tasks.m.results.x[*])")}},
		tasks:    []TaskOutcome{outcome("m", plan.PhaseSucceeded, str("x", "1")), outcome("m", plan.PhaseSucceeded, str("x", "2"))},
		matrixed: map[string]bool{"m": true},
		want:     []v1beta1.CustomRunResult{{Name: "all", Value: `["1","2"]`}},
	}, {
		name:  "missing result of a succeeded task",
		spec:  []v1.PipelineResult{spec("r", "$(tasks.a.results.nope)")},
		tasks: []TaskOutcome{outcome("a", plan.PhaseSucceeded)},
		err:   true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PipelineResults(tc.spec, tc.tasks, tc.skipped, tc.matrixed)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// The summary is encoded the way the API server hands it back (keys sorted), so an
// unchanged summary compares equal and is not written again.
func TestSummaryEncoding(t *testing.T) {
	s := Summary{PipelineName: "p", PodName: "run-pod", TaskRuns: []TaskSummary{{Name: "run-a", PipelineTaskName: "a", MemberOf: "tasks", State: plan.PhaseRunning, Reason: "Running"}}}
	raw, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(raw.Raw, &generic); err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(generic)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(raw.Raw) {
		t.Errorf("not canonical: %s vs %s", raw.Raw, again)
	}
	if diff := cmp.Diff(s, DecodeSummary(raw)); diff != "" {
		t.Errorf("round trip (-want +got)\n%s", diff)
	}
}

func TestVerdict(t *testing.T) {
	o := func(states ...plan.Phase) *Observation {
		obs := &Observation{Over: true}
		for _, s := range states {
			reason := ""
			if s == plan.PhaseSkipped {
				reason = string(v1.WhenExpressionsSkip)
			}
			obs.Tasks = append(obs.Tasks, TaskOutcome{Task: plan.Task{PipelineTask: "t", TaskRun: "r"}, State: s, Reason: reason})
		}
		return obs
	}
	for _, tc := range []struct {
		obs  *Observation
		want string
	}{
		{o(plan.PhaseSucceeded, plan.PhaseSkipped), "true/Succeeded"},
		{o(plan.PhaseSucceeded, plan.PhaseFailed), "false/Failed"},
		{o(plan.PhaseSucceeded, plan.PhaseCancelled), "false/Failed"},
		{&Observation{Tasks: []TaskOutcome{{State: plan.PhaseSkipped, Reason: string(v1.PipelineTimedOutSkip)}}}, "false/CustomRunTimedOut"},
		{&Observation{Tasks: []TaskOutcome{{State: plan.PhaseFailed, Reason: string(v1.TaskRunReasonFailureIgnored)}}}, "true/Succeeded"},
		{&Observation{Tasks: []TaskOutcome{{State: plan.PhaseCancelled, Status: v1.TaskRunStatus{Status: duckv1.Status{Conditions: duckv1.Conditions{{
			Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "TaskRunCancelled",
			Message: `TaskRun "r" was cancelled. ` + string(v1.TaskRunCancelledByPipelineTimeoutMsg)}}}}}}}, "false/CustomRunTimedOut"},
	} {
		v := tc.obs.Verdict()
		if got := map[bool]string{true: "true", false: "false"}[v.Succeeded] + "/" + v.Reason; got != tc.want {
			t.Errorf("got %s want %s (%s)", got, tc.want, v.Message)
		}
	}
}

// A task skipped before its steps ran (its DAG predecessor failed) has no step states in
// the report, and its containers exit 0 once the entrypoint decides to skip: its steps
// show as skipped, not as completed.
func TestSkippedTaskSteps(t *testing.T) {
	st := plan.TaskState{Key: "build", Phase: plan.PhaseSkipped, Reason: "PipelineRun was stopping", CompletionTime: at(time.Second)}
	pod := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
		Name: "step-build-0", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", FinishedAt: *at(2 * time.Second)}},
	}}}}
	in := Input{Tasks: []plan.Task{build}, PodName: "run-pod", Pod: pod, Report: map[string]plan.TaskState{"build": st},
		TaskRuns: map[string]*v1.TaskRun{"run-build": managedTaskRun("run-build")}, Now: *at(time.Minute), Bounds: DefaultBounds}
	o := Observe(in)
	s := o.Tasks[0].Status
	if condOf(s) != "False/"+ReasonTaskRunSkipped || o.Tasks[0].State != plan.PhaseSkipped {
		t.Fatalf("got %s %s", condOf(s), o.Tasks[0].State)
	}
	if len(s.Steps) != 1 || s.Steps[0].Terminated == nil || s.Steps[0].TerminationReason != "Skipped" || s.Steps[0].Container != "step-build-0" ||
		!s.Steps[0].Terminated.FinishedAt.Equal(at(time.Second)) {
		t.Errorf("steps: %+v", s.Steps)
	}
}
