// Package observe turns what can be seen of one attempt of a PipelineInPod run — the Pod,
// the task states streamed by the reporter container, and the child TaskRuns as they are
// stored — into the statuses the controller should write: one per child TaskRun, and the
// CustomRun's condition, results and per-task summary.
//
// Everything here is a pure function of its Input, so the same observation always yields
// the same statuses. That is what lets the controller compare "what we would write" with
// "what is stored" and write only differences: a controller restart, a stale informer copy
// or a stale write by somebody else all converge on the next reconcile.
package observe

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonpod "github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// TaskRunManagedBy is the spec.managedBy of every child TaskRun (see v1alpha1).
const TaskRunManagedBy = v1alpha1.TaskRunManagedBy

// Reasons of our own, for causes Tekton has no word for. All other reasons are Tekton's.
const (
	// ReasonTaskRunSkipped marks a child TaskRun whose pipeline task was skipped; see
	// skippedCondition for why it is False.
	ReasonTaskRunSkipped = "TaskRunSkipped"
	// ReasonPodDeleted: the attempt's pod disappeared before every task finished.
	ReasonPodDeleted = "PodDeleted"
	// ReasonPodUnschedulable: the pod stayed unschedulable longer than Bounds.Unschedulable.
	ReasonPodUnschedulable = "PodUnschedulable"
	// ReasonPodFailed: the pod ended (or its reporter died) before every task reported a
	// final state, for a cause not covered by a more precise reason.
	ReasonPodFailed = "PodFailed"
	// ReasonNodeLost: the node controller marked the pod's node unreachable (the pod's
	// status.reason is NodeLost).
	ReasonNodeLost = "NodeLost"
	// ReasonPodDisrupted: the pod has a DisruptionTarget condition: it is about to be
	// terminated (preempted, evicted, its node's NoExecute taint, the kubelet's own
	// shutdown or pressure eviction).
	ReasonPodDisrupted = "PodDisrupted"
	// ReasonKubeletUnreachable: the reporter's log could not be read for a bounded time
	// (the kubelet serving it does not answer).
	ReasonKubeletUnreachable = "KubeletUnreachable"
	// ReasonPodAnnotationChanged: the plan or run annotation of the attempt's pod differs
	// from what the controller created it with; the run is not observed from it.
	ReasonPodAnnotationChanged = "PodAnnotationChanged"
	// ReasonTaskRunStatusRefused: the API server refused a child TaskRun's status for good
	// (invalid, or too large for it to store), so the run cannot be recorded and ends.
	ReasonTaskRunStatusRefused = "TaskRunStatusRefused"
	// ReasonCouldntGetPipelineResult mirrors Tekton's PipelineRun reason of the same name.
	ReasonCouldntGetPipelineResult = string(v1.PipelineRunReasonCouldntGetPipelineResult)
	// ReasonToBeRetried is set on the CustomRun between a failed attempt and the next one,
	// as Tekton does on a TaskRun it retries.
	ReasonToBeRetried = string(v1.TaskRunReasonToBeRetried)
)

// pendingMessage and runningMessage are Tekton's own wording, so that a TaskRun that
// Tekton does reconcile (no spec.managedBy honoured) sees exactly the condition it would
// write itself and leaves it alone instead of rewriting it on every reconcile.
func pendingMessage(taskRun string) string { return fmt.Sprintf("TaskRun %q is pending", taskRun) }

const (
	runningMessage   = "Not all Steps in the Task have finished executing"
	succeededMessage = "All Steps have completed executing"
)

// Bounds limit how long the controller waits on pod states that may or may not recover.
type Bounds struct {
	// Unschedulable: how long a pod may stay unschedulable before the run fails.
	Unschedulable time.Duration
	// ImagePullBackOff: how long a container may stay in ImagePullBackOff (Tekton's
	// default-imagepullbackoff-timeout; 0 fails at once, as Tekton does by default).
	ImagePullBackOff time.Duration
	// StepExit: how long a step container may stay terminated while the report still says
	// its step is running, before the task is failed. It covers the lag between a step's
	// entrypoint exiting and the reporter's next line.
	StepExit time.Duration
}

// DefaultBounds are the controller's defaults (flags of cmd/controller).
var DefaultBounds = Bounds{Unschedulable: 5 * time.Minute, StepExit: time.Minute}

// Ending says how an attempt ends when it ends before every task reached a final state on
// its own: the CustomRun was cancelled or timed out, or the pod failed.
type Ending struct {
	// Reason and Message become the CustomRun's Succeeded=False condition.
	Reason  string
	Message string
	// Culprit is the key of the task whose container caused the ending, if any; it ends
	// with CulpritReason/CulpritMessage.
	Culprit        string
	CulpritReason  v1.TaskRunReason
	CulpritMessage string
	// Started tasks (other than the culprit) end with StartedReason/StartedMessage when
	// set; tasks that had not started, and started ones when unset, with TaskReason/
	// TaskMessage (%s in TaskMessage is replaced by the TaskRun's name).
	StartedReason  v1.TaskRunReason
	StartedMessage string
	TaskReason     v1.TaskRunReason
	TaskMessage    string
}

// Input is one observation of one attempt.
type Input struct {
	// Tasks of the attempt: the Plan's tasks, or (when the pod and its plan are gone) one
	// task per child TaskRun.
	Tasks []plan.Task
	// PodName is the attempt's pod; Pod is nil when it does not exist (yet, or any more).
	PodName string
	Pod     *corev1.Pod
	// Report holds the task states read from the reporter container's log; ReportDone is
	// its final marker.
	Report     map[string]plan.TaskState
	ReportDone bool
	// TaskRuns are the child TaskRuns as stored, by name.
	TaskRuns map[string]*v1.TaskRun
	// End is set by the controller for endings it decides (cancel, timeout, pod deleted);
	// Observe adds the endings it sees in the pod.
	End *Ending
	// Now is the observation time, already truncated to seconds (the API's precision), so
	// that a recomputed status compares equal to the stored one.
	Now    metav1.Time
	Bounds Bounds
	// Settled holds, by TaskRun name, the final states recorded in the CustomRun's summary
	// once it is done: they stand in for a report that can no longer be read.
	Settled map[string]TaskSummary
}

// TaskOutcome is one task's computed state.
type TaskOutcome struct {
	Task   plan.Task
	State  plan.Phase
	Reason string
	// Status is what the child TaskRun's status should be; Write says whether it should be
	// written at all (false when the TaskRun is missing, or keeping what is stored is right).
	Status v1.TaskRunStatus
	Write  bool
}

// Observation is the result of Observe.
type Observation struct {
	Tasks []TaskOutcome
	// End is the ending in force (the controller's or one seen in the pod), if any.
	End *Ending
	// Over: every task is terminal; the attempt is finished.
	Over bool
	// SkippedBefore counts the pipeline tasks skipped before anything ran (no TaskRun),
	// which Tekton counts as skipped too.
	SkippedBefore int
}

// Observe computes every task's outcome for one attempt.
func Observe(in Input) *Observation {
	end := in.End
	if end == nil {
		end = PodFailure(in)
	}
	o := &Observation{End: end, Over: true}
	for _, t := range in.Tasks {
		out := taskOutcome(in, t, end)
		if !out.State.IsTerminal() {
			o.Over = false
		}
		o.Tasks = append(o.Tasks, out)
	}
	if !o.Over {
		return o
	}
	// Once the attempt is over the pod is never shared by a running task any more, so
	// every TaskRun may name it (see podNameAllowed).
	for i := range o.Tasks {
		out := &o.Tasks[i]
		if tr := in.TaskRuns[out.Task.TaskRun]; tr != nil && out.Write && in.PodName != "" && out.Status.PodName == "" {
			out.Status.PodName = in.PodName
		}
	}
	return o
}

// Counts of tasks by outcome, in Tekton's PipelineRun categories.
type Counts struct {
	Succeeded, Failed, IgnoredFailed, Cancelled, Skipped, Incomplete int
	// TimedOut counts tasks skipped because the pipeline's own timeout was reached.
	TimedOut int
}

// Count tallies the outcomes.
func (o *Observation) Count() Counts {
	c := Counts{Skipped: o.SkippedBefore}
	for _, t := range o.Tasks {
		switch t.State {
		case plan.PhaseSucceeded:
			c.Succeeded++
		case plan.PhaseFailed:
			if t.Reason == string(v1.TaskRunReasonFailureIgnored) {
				c.IgnoredFailed++
			} else {
				c.Failed++
			}
		case plan.PhaseCancelled:
			c.Cancelled++
			// Cancelled by the pipeline's own timeout inside the pod (the entrypoints
			// use Tekton's message for it).
			if cc := t.Status.GetCondition(apis.ConditionSucceeded); cc != nil && strings.Contains(cc.Message, string(v1.TaskRunCancelledByPipelineTimeoutMsg)) {
				c.TimedOut++
			}
		case plan.PhaseSkipped:
			c.Skipped++
			if t.Reason == string(v1.PipelineTimedOutSkip) {
				c.TimedOut++
			}
		default:
			c.Incomplete++
		}
	}
	return c
}

// RunningMessage is Tekton's PipelineRun running message.
func (c Counts) RunningMessage() string {
	return fmt.Sprintf("Tasks Completed: %d (Failed: %d, Cancelled %d), Incomplete: %d, Skipped: %d",
		c.Succeeded+c.Failed+c.IgnoredFailed+c.Cancelled, c.Failed+c.IgnoredFailed, c.Cancelled, c.Incomplete, c.Skipped)
}

// DoneMessage is Tekton's PipelineRun completion message.
func (c Counts) DoneMessage() string {
	done := c.Succeeded + c.Failed + c.IgnoredFailed + c.Cancelled
	if c.IgnoredFailed > 0 {
		return fmt.Sprintf("Tasks Completed: %d (Failed: %d (Ignored: %d), Cancelled %d), Skipped: %d",
			done, c.Failed+c.IgnoredFailed, c.IgnoredFailed, c.Cancelled, c.Skipped)
	}
	return fmt.Sprintf("Tasks Completed: %d (Failed: %d, Cancelled %d), Skipped: %d", done, c.Failed, c.Cancelled, c.Skipped)
}

// Verdict is the CustomRun condition for an attempt that is over.
type Verdict struct {
	Succeeded bool
	Reason    string
	Message   string
}

// Verdict decides how a finished attempt ends. Tekton's rules for a PipelineRun: a failed
// (not ignored) or cancelled task fails it, skipped tasks do not.
func (o *Observation) Verdict() Verdict {
	c := o.Count()
	if o.End != nil {
		return Verdict{Reason: o.End.Reason, Message: o.End.Message}
	}
	msg := c.DoneMessage()
	if failed := o.failedTasks(); failed != "" {
		msg += "; " + failed
	}
	switch {
	case c.TimedOut > 0:
		return Verdict{Reason: string(v1beta1.CustomRunReasonTimedOut), Message: msg}
	case c.Failed > 0 || c.Cancelled > 0:
		return Verdict{Reason: string(v1beta1.CustomRunReasonFailed), Message: msg}
	}
	return Verdict{Succeeded: true, Reason: string(v1beta1.CustomRunReasonSuccessful), Message: msg}
}

// failedTasks names the failed tasks and their messages, so the CustomRun's message
// says what went wrong without opening every TaskRun.
func (o *Observation) failedTasks() string {
	var parts []string
	for _, t := range o.Tasks {
		if t.State != plan.PhaseFailed || t.Reason == string(v1.TaskRunReasonFailureIgnored) {
			continue
		}
		msg := ""
		if c := t.Status.GetCondition(apis.ConditionSucceeded); c != nil {
			msg = c.Message
		}
		parts = append(parts, fmt.Sprintf("task %q (TaskRun %q) %s: %s", t.Task.PipelineTask, t.Task.TaskRun, t.Reason, truncate(msg, 512)))
	}
	return strings.Join(parts, "; ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// taskOf finds the plan task that owns a container, for messages that name the task.
func taskOf(tasks []plan.Task, container string) (plan.Task, bool) {
	for _, t := range tasks {
		for _, c := range t.Steps {
			if c == container {
				return t, true
			}
		}
		for _, c := range t.Sidecars {
			if c == container {
				return t, true
			}
		}
	}
	return plan.Task{}, false
}

func isSidecar(t plan.Task, container string) bool {
	for _, c := range t.Sidecars {
		if c == container {
			return true
		}
	}
	return false
}

// onlyStepContainers tells whether every container of the pod carries the "step-" prefix,
// i.e. nothing was injected that Tekton's stopSidecars would stop.
func onlyStepContainers(pod *corev1.Pod) bool {
	if pod == nil {
		return false
	}
	for _, c := range pod.Spec.Containers {
		if !tektonpod.IsContainerStep(c.Name) {
			return false
		}
	}
	return true
}

// TasksFromTaskRuns stands in for the Plan when the pod (which carries it) is gone: one
// task per child TaskRun, keyed by the TaskRun name.
func TasksFromTaskRuns(trs []*v1.TaskRun) []plan.Task {
	sorted := append([]*v1.TaskRun(nil), trs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var out []plan.Task
	for _, tr := range sorted {
		out = append(out, plan.Task{
			Key:          tr.Name,
			PipelineTask: tr.Labels[pipeline.PipelineTaskLabelKey],
			TaskRun:      tr.Name,
			Finally:      tr.Labels[pipeline.MemberOfLabelKey] == v1.PipelineFinallyTasks,
		})
	}
	return out
}
