package observe

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// Waiting reasons of a container that will not start without outside help. ErrImagePull
// is not one: the kubelet retries it and reports ImagePullBackOff within seconds, which
// is what Tekton waits for too.
var (
	imagePullFailures = map[string]bool{"ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true}
	configFailures    = map[string]bool{"CreateContainerConfigError": true}
	createFailures    = map[string]bool{"CreateContainerError": true}
)

// Cancelled is the ending of a CustomRun whose spec.status is RunCancelled.
func Cancelled(crName, statusMessage string) *Ending {
	return &Ending{
		Reason:      string(v1beta1.CustomRunReasonCancelled),
		Message:     strings.TrimSpace(fmt.Sprintf("CustomRun %q was cancelled. %s", crName, statusMessage)),
		TaskReason:  v1.TaskRunReasonCancelled,
		TaskMessage: "TaskRun cancelled as the CustomRun it belongs to has been cancelled.",
	}
}

// TimedOut is the ending of a CustomRun that ran longer than its timeout. Tekton cancels
// the TaskRuns of a timed-out PipelineRun the same way.
func TimedOut(crName string, timeout time.Duration) *Ending {
	return &Ending{
		Reason:      string(v1beta1.CustomRunReasonTimedOut),
		Message:     fmt.Sprintf("CustomRun %q failed to finish within %q", crName, timeout.String()),
		TaskReason:  v1.TaskRunReasonCancelled,
		TaskMessage: "TaskRun cancelled as the CustomRun it belongs to has timed out.",
	}
}

// PodDeleted is the ending of an attempt whose pod disappeared.
func PodDeleted(podName string, tasks []string) *Ending {
	return podLevel(ReasonPodDeleted, withRunning(fmt.Sprintf("pod %q was deleted before every task finished", podName), tasks), podName)
}

// withRunning is msg naming the tasks that were running, if any.
func withRunning(msg string, tasks []string) string {
	if len(tasks) == 0 {
		return msg
	}
	return msg + "; running: " + strings.Join(tasks, ", ")
}

// nodeUnreachablePodReason is the status.reason the node controller gives the pods of a
// node it cannot reach (k8s.io/kubernetes pkg/util/node NodeUnreachablePodReason; that
// module is not a library to import).
const nodeUnreachablePodReason = "NodeLost"

// podBeingDeleted is the ending of an attempt whose pod is being deleted: the cause, when
// the pod carries one (a DisruptionTarget condition), and its node are named.
func podBeingDeleted(pod *corev1.Pod, tasks []string) *Ending {
	c := disruption(pod)
	if c == nil {
		return PodDeleted(pod.Name, tasks)
	}
	msg := fmt.Sprintf("pod %q%s is being deleted (%s: %s) before every task finished", pod.Name, onNode(pod), c.Reason, c.Message)
	return podLevel(ReasonPodDeleted, withRunning(msg, tasks), pod.Name)
}

func onNode(pod *corev1.Pod) string {
	if pod.Spec.NodeName == "" {
		return ""
	}
	return fmt.Sprintf(" on node %q", pod.Spec.NodeName)
}

// disruption is the pod's DisruptionTarget condition when it is true: the pod is about to
// be terminated (k8s.io/api core/v1 DisruptionTarget).
func disruption(pod *corev1.Pod) *corev1.PodCondition {
	for i, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// KubeletUnreachable is the ending of an attempt whose reporter's log could not be read
// for d, last with err; tasks are those that were running.
func KubeletUnreachable(pod *corev1.Pod, d time.Duration, err error, tasks []string) *Ending {
	node := "of pod " + strconv.Quote(pod.Name)
	if pod.Spec.NodeName != "" {
		node = "on node " + strconv.Quote(pod.Spec.NodeName)
	}
	msg := fmt.Sprintf("the kubelet %s has not answered for %s: %v", node, d, err)
	return podLevel(ReasonKubeletUnreachable, withRunning(msg, tasks), pod.Name)
}

// PodLost tells a pod that is gone or going, whatever its containers say: it is being
// deleted, its node is unreachable, or it is about to be terminated. Its log may not be
// readable any more; the attempt is observed without it.
func PodLost(pod *corev1.Pod) bool {
	return pod != nil && (pod.DeletionTimestamp != nil || pod.Status.Reason == nodeUnreachablePodReason || disruption(pod) != nil)
}

// RefusedMessage is the message of a TaskRun whose status the API server refused for good.
func RefusedMessage(cause string) string {
	return "the API server refused the TaskRun's status: " + cause
}

// StatusRefused is the ending of an attempt one of whose TaskRuns' status the API server
// refused for good: that task fails with message (see RefusedMessage), the others are
// cancelled.
func StatusRefused(t plan.Task, podName, message string) *Ending {
	return culprit(Input{PodName: podName}, t, ReasonTaskRunStatusRefused, message)
}

// podLevel is an ending that no single task caused: tasks that had started fail with
// the cause, the others are cancelled.
func podLevel(reason, message, podName string) *Ending {
	return &Ending{
		Reason:         reason,
		Message:        message,
		StartedReason:  v1.TaskRunReason(reason),
		StartedMessage: message,
		TaskReason:     v1.TaskRunReasonCancelled,
		TaskMessage:    fmt.Sprintf("TaskRun cancelled as pod %q it runs in failed: %s", podName, reason),
	}
}

// culprit is an ending caused by one task's container.
func culprit(in Input, t plan.Task, reason v1.TaskRunReason, taskMessage string) *Ending {
	return &Ending{
		Reason:         string(reason),
		Message:        fmt.Sprintf("task %q (TaskRun %q): %s", t.PipelineTask, t.TaskRun, taskMessage),
		Culprit:        t.Key,
		CulpritReason:  reason,
		CulpritMessage: taskMessage,
		TaskReason:     v1.TaskRunReasonCancelled,
		TaskMessage:    fmt.Sprintf("TaskRun cancelled as task %q, which shares pod %q, failed: %s", t.PipelineTask, in.PodName, reason),
	}
}

// EndsPod tells whether an attempt that ended with this CustomRun reason leaves a pod
// that should be deleted if it still runs: it was cancelled, timed out, or is stuck. An
// attempt that ended because its tasks ended (Succeeded, Failed) leaves a pod that is
// finishing on its own and whose logs users want.
func EndsPod(reason string) bool {
	switch reason {
	case string(v1beta1.CustomRunReasonCancelled), string(v1beta1.CustomRunReasonTimedOut),
		ReasonPodDeleted, ReasonPodUnschedulable, ReasonPodFailed, ReasonTaskRunStatusRefused,
		ReasonNodeLost, ReasonPodDisrupted, ReasonKubeletUnreachable, ReasonPodAnnotationChanged,
		string(v1.TaskRunReasonPodEvicted), string(v1.TaskRunReasonImagePullFailed),
		string(v1.TaskRunReasonCreateContainerConfigError), string(v1.TaskRunReasonPodCreationFailed),
		string(v1.TaskRunReasonStepOOM), string(v1.TaskRunReasonStepFailed),
		string(v1.TaskRunReasonSidecarOOM), string(v1.TaskRunReasonSidecarFailed),
		string(v1.TaskRunReasonInitContainerOOM), string(v1.TaskRunReasonInitContainerFailed):
		return true
	}
	return false
}

// PodFailure looks for a reason, in the pod, why the attempt cannot finish on its own.
func PodFailure(in Input) *Ending {
	pod := in.Pod
	if pod == nil || allReportedFinal(in) {
		return nil
	}
	now := in.Now.Time
	if pod.DeletionTimestamp != nil {
		return podBeingDeleted(pod, startedTasks(in))
	}
	if pod.Status.Reason == nodeUnreachablePodReason {
		return podLevel(ReasonNodeLost, fmt.Sprintf("pod %q%s: its node is unreachable (%s); tasks without a final state: %s",
			pod.Name, onNode(pod), pod.Status.Message, strings.Join(unfinishedTasks(in), ", ")), pod.Name)
	}
	if c := disruption(pod); c != nil {
		return podLevel(ReasonPodDisrupted, fmt.Sprintf("pod %q%s is being terminated (%s: %s); tasks without a final state: %s",
			pod.Name, onNode(pod), c.Reason, c.Message, strings.Join(unfinishedTasks(in), ", ")), pod.Name)
	}
	switch pod.Status.Phase {
	case corev1.PodFailed:
		if pod.Status.Reason == "Evicted" {
			return podLevel(string(v1.TaskRunReasonPodEvicted),
				fmt.Sprintf("pod %q was evicted: %s", pod.Name, pod.Status.Message), pod.Name)
		}
		return podLevel(ReasonPodFailed, fmt.Sprintf("pod %q failed before every task finished (%s): %s; tasks without a final state: %s",
			pod.Name, pod.Status.Reason, pod.Status.Message, strings.Join(unfinishedTasks(in), ", ")), pod.Name)
	case corev1.PodSucceeded:
		return podLevel(ReasonPodFailed, fmt.Sprintf("pod %q ended before every task reported a final state; tasks without one: %s",
			pod.Name, strings.Join(unfinishedTasks(in), ", ")), pod.Name)
	}

	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable &&
			now.Sub(pod.CreationTimestamp.Time) >= in.Bounds.Unschedulable {
			return podLevel(ReasonPodUnschedulable, fmt.Sprintf("pod %q could not be scheduled for %s: %s",
				pod.Name, in.Bounds.Unschedulable, c.Message), pod.Name)
		}
	}

	for _, cs := range pod.Status.InitContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			if reason, ok := waitingFailure(in, w); ok {
				return podLevel(string(reason), fmt.Sprintf("init container %q of pod %q (image %q) cannot start: %s: %s",
					cs.Name, pod.Name, imageOf(pod.Spec.InitContainers, cs.Name), w.Reason, w.Message), pod.Name)
			}
		}
		if term := cs.State.Terminated; term != nil && term.ExitCode != 0 {
			reason := v1.TaskRunReasonInitContainerFailed
			if term.Reason == "OOMKilled" {
				reason = v1.TaskRunReasonInitContainerOOM
			}
			return podLevel(string(reason), fmt.Sprintf("init container %q of pod %q exited with code %d (%s): %s",
				cs.Name, pod.Name, term.ExitCode, term.Reason, term.Message), pod.Name)
		}
	}

	for _, cs := range pod.Status.ContainerStatuses {
		t, ok := taskOf(in.Tasks, cs.Name)
		if !ok {
			if cs.Name == plan.ReporterContainer {
				if e := reporterFailure(in, cs); e != nil {
					return e
				}
			}
			continue
		}
		if finalKnown(in, t) {
			continue
		}
		kind := "step"
		if isSidecar(t, cs.Name) {
			kind = "sidecar"
		}
		if w := cs.State.Waiting; w != nil {
			if reason, ok := waitingFailure(in, w); ok {
				msg := fmt.Sprintf("the %s container %q in TaskRun %q cannot start (image %q). The pod errored with the message: %q.",
					kind, cs.Name, t.TaskRun, imageOf(pod.Spec.Containers, cs.Name), w.Reason+": "+w.Message)
				return culprit(in, t, reason, msg)
			}
		}
		term := cs.State.Terminated
		if term == nil {
			continue
		}
		if term.Reason == "OOMKilled" {
			reason := v1.TaskRunReasonStepOOM
			if kind == "sidecar" {
				reason = v1.TaskRunReasonSidecarOOM
			}
			return culprit(in, t, reason, fmt.Sprintf("the %s container %q in TaskRun %q was OOMKilled (exit code %d)", kind, cs.Name, t.TaskRun, term.ExitCode))
		}
		if kind == "step" && !stepReportedFinal(in, t, cs.Name) && now.Sub(term.FinishedAt.Time) >= in.Bounds.StepExit {
			return culprit(in, t, v1.TaskRunReasonStepFailed, fmt.Sprintf("the step container %q in TaskRun %q exited with code %d (%s) without reporting its step's outcome: %s",
				cs.Name, t.TaskRun, term.ExitCode, term.Reason, term.Message))
		}
	}
	return nil
}

// reporterFailure: without the reporter nothing more can be learnt about the tasks.
func reporterFailure(in Input, cs corev1.ContainerStatus) *Ending {
	if w := cs.State.Waiting; w != nil {
		if reason, ok := waitingFailure(in, w); ok {
			return podLevel(string(reason), fmt.Sprintf("the reporter container %q of pod %q cannot start (image %q): %s: %s",
				cs.Name, in.PodName, imageOf(in.Pod.Spec.Containers, cs.Name), w.Reason, w.Message), in.PodName)
		}
	}
	term := cs.State.Terminated
	if term == nil || in.ReportDone || in.Now.Sub(term.FinishedAt.Time) < in.Bounds.StepExit {
		return nil
	}
	return podLevel(ReasonPodFailed, fmt.Sprintf("the reporter container %q of pod %q exited with code %d (%s) before every task reported a final state",
		cs.Name, in.PodName, term.ExitCode, term.Reason), in.PodName)
}

// waitingFailure classifies a waiting container, with Tekton's grace rules.
func waitingFailure(in Input, w *corev1.ContainerStateWaiting) (v1.TaskRunReason, bool) {
	switch {
	case imagePullFailures[w.Reason]:
		if w.Reason == "ImagePullBackOff" && in.Bounds.ImagePullBackOff > 0 && in.Now.Sub(readySince(in.Pod)) < in.Bounds.ImagePullBackOff {
			return "", false
		}
		return v1.TaskRunReasonImagePullFailed, true
	case configFailures[w.Reason]:
		// A subPath directory that does not exist yet can appear; Tekton waits for it too.
		if strings.Contains(w.Message, "failed to create subPath directory") {
			return "", false
		}
		return v1.TaskRunReasonCreateContainerConfigError, true
	case createFailures[w.Reason]:
		if strings.Contains(w.Message, "context deadline exceeded") {
			return "", false
		}
		return v1.TaskRunReasonPodCreationFailed, true
	}
	return "", false
}

// readySince is when the pod became ready to start containers: Tekton measures its
// image-pull back-off timeout from there.
func readySince(pod *corev1.Pod) time.Time {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodInitialized || c.Type == "PodReadyToStartContainers" {
			return c.LastTransitionTime.Time
		}
	}
	return pod.CreationTimestamp.Time
}

func imageOf(cs []corev1.Container, name string) string {
	for _, c := range cs {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}

func allReportedFinal(in Input) bool {
	for _, t := range in.Tasks {
		if !finalKnown(in, t) {
			return false
		}
	}
	return true
}

// finalKnown tells whether t's final state is known: reported, or written to its
// TaskRun by an earlier observation of this attempt (the TaskRun is final and names
// this pod). A report read after the kubelet rotated the reporter's log away may lack
// it (docs/design.md, "The results channel").
func finalKnown(in Input, t plan.Task) bool {
	if st, ok := in.Report[t.Key]; ok && st.Phase.IsTerminal() {
		return true
	}
	tr := in.TaskRuns[t.TaskRun]
	return tr != nil && in.PodName != "" && tr.Status.PodName == in.PodName && isFinal(tr.Status)
}

func stepReportedFinal(in Input, t plan.Task, container string) bool {
	st, ok := in.Report[t.Key]
	if !ok {
		return false
	}
	for i, c := range t.Steps {
		if c != container {
			continue
		}
		ss := reportedStep(&st, i, c)
		return ss != nil && (ss.CompletionTime != nil || ss.ExitCode != nil)
	}
	return false
}

func unfinishedTasks(in Input) []string {
	var out []string
	for _, t := range in.Tasks {
		if !finalKnown(in, t) {
			out = append(out, t.PipelineTask)
		}
	}
	return out
}

// startedTasks names the tasks that were running, from the report or the stored TaskRuns.
func startedTasks(in Input) []string {
	var out []string
	for _, t := range in.Tasks {
		st, ok := in.Report[t.Key]
		switch {
		case ok && st.Phase == plan.PhaseRunning:
			out = append(out, t.PipelineTask)
		case !ok:
			if tr := in.TaskRuns[t.TaskRun]; tr != nil && tr.Status.StartTime != nil && !isFinal(tr.Status) {
				out = append(out, t.PipelineTask)
			}
		}
	}
	sort.Strings(out)
	return out
}

// StartedTasks is startedTasks for the controller's PodDeleted ending.
func StartedTasks(in Input) []string { return startedTasks(in) }
