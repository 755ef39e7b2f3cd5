package observe

import (
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tektonpod "github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// taskOutcome computes one child TaskRun's status.
//
// Attempts of the CustomRun are told apart by status.podName: every status written for an
// attempt that is over names that attempt's pod. A stored status that names another pod is
// therefore a finished earlier attempt; it moves into retriesStatus (as Tekton's own
// retryTaskRun does) and the TaskRun starts over for this attempt. Within one attempt a
// final status is never replaced by a non-final one: that is how our final status wins
// over anything stale.
func taskOutcome(in Input, t plan.Task, end *Ending) TaskOutcome {
	tr := in.TaskRuns[t.TaskRun]
	out := TaskOutcome{Task: t, State: plan.PhasePending}

	var existing v1.TaskRunStatus
	if tr != nil {
		existing = *tr.Status.DeepCopy()
	}
	sameAttempt := existing.PodName == "" || existing.PodName == in.PodName

	// status keeps whatever we do not own (annotations, span context, provenance...).
	status := *existing.DeepCopy()
	status.RetriesStatus = nil
	if sameAttempt {
		// Retries inside this attempt's pod are recomputed from the report below; entries
		// of earlier attempts stay as they are.
		for _, rs := range existing.RetriesStatus {
			if rs.PodName != in.PodName || in.PodName == "" {
				status.RetriesStatus = append(status.RetriesStatus, rs)
			}
		}
	} else {
		last := *existing.DeepCopy()
		last.RetriesStatus = nil
		status.RetriesStatus = append(existing.RetriesStatus, last)
		resetCurrent(&status)
	}

	st, reported := in.Report[t.Key]
	switch {
	case reported && !(sameAttempt && isFinal(existing) && !st.Phase.IsTerminal()):
		applyReport(&status, in, t, tr, st)
		out.State, out.Reason = stateOf(status, st)
	case sameAttempt && hasContent(existing):
		// Nothing newer to say (no report yet, or the stored status is already final):
		// keep what is stored, it came from an earlier observation of this attempt.
		out.State, out.Reason = stateOfStatus(existing)
	default:
		if steps := stepStates(t, tr, nil, in.Pod); len(steps) > 0 {
			// Not started, but one of its containers cannot start (e.g. image pull): show it.
			status.Steps = steps
		}
	}

	if ts, ok := in.Settled[t.TaskRun]; ok && ts.State.IsTerminal() && !out.State.IsTerminal() {
		applySettled(&status, t, ts, in)
		out.State, out.Reason = ts.State, ts.Reason
	}
	if end != nil && !out.State.IsTerminal() {
		reason, message := endingFor(end, t, status.StartTime != nil)
		applyEnding(&status, t.TaskRun, in.PodName, reason, message, in.Now)
		out.State, out.Reason = stateOfStatus(status)
	}

	content := out.State != plan.PhasePending || len(status.Steps) > 0
	if content && tr != nil && tr.Spec.TaskSpec != nil {
		// Tekton records the spec it ran in status.taskSpec; UIs read it from there.
		status.TaskSpec = tr.Spec.TaskSpec.DeepCopy()
	}
	if !sameAttempt && !content {
		status.Conditions = nil
		setCondition(&status, apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionUnknown,
			Reason: string(v1.TaskRunReasonPending), Message: pendingMessage(t.TaskRun)}, in.Now)
	}
	if content && podNameAllowed(tr, out.State, in.Pod) {
		status.PodName = in.PodName
	}
	out.Status = status
	out.Write = tr != nil && (content || !sameAttempt)
	return out
}

// podNameAllowed decides whether a TaskRun may name the shared pod yet. With
// spec.managedBy honoured Tekton never looks at the TaskRun, so it may at once (and
// `tkn taskrun logs` works while the task runs). Without it (an older Tekton, or a
// TaskRun created without managedBy), a TaskRun with a podName that Tekton sees as done
// makes Tekton stop the pod's non-"step-" containers, and a cancelled one makes Tekton
// delete the pod: then only final TaskRuns of a pod that has no other containers name it,
// and the rest do once the attempt is over (see Observe).
func podNameAllowed(tr *v1.TaskRun, s plan.Phase, pod *corev1.Pod) bool {
	if tr == nil || s == plan.PhasePending {
		return false
	}
	if tr.Spec.ManagedBy != nil && *tr.Spec.ManagedBy == TaskRunManagedBy {
		return true
	}
	return s.IsTerminal() && onlyStepContainers(pod)
}

func resetCurrent(s *v1.TaskRunStatus) {
	s.Conditions = nil
	s.PodName = ""
	s.StartTime = nil
	s.CompletionTime = nil
	s.Steps = nil
	s.Sidecars = nil
	s.Results = nil
	s.Artifacts = nil
}

func hasContent(s v1.TaskRunStatus) bool {
	return len(s.Conditions) > 0 || s.StartTime != nil || len(s.Steps) > 0
}

func isFinal(s v1.TaskRunStatus) bool {
	c := s.GetCondition(apis.ConditionSucceeded)
	return c != nil && !c.IsUnknown()
}

// applyReport fills the status from the task's reported state.
func applyReport(s *v1.TaskRunStatus, in Input, t plan.Task, tr *v1.TaskRun, st plan.TaskState) {
	s.StartTime = st.StartTime
	s.CompletionTime = nil
	s.Results = st.Results
	for _, a := range st.Attempts {
		s.RetriesStatus = append(s.RetriesStatus, attemptStatus(t, tr, a, in.PodName))
	}
	s.Steps = stepStates(t, tr, &st, in.Pod)
	s.Sidecars = sidecarStates(t, tr, in.Pod)

	cond := apis.Condition{Type: apis.ConditionSucceeded}
	switch st.Phase {
	case plan.PhaseSucceeded:
		cond.Status, cond.Reason, cond.Message = corev1.ConditionTrue, string(v1.TaskRunReasonSuccessful), succeededMessage
	case plan.PhaseFailed:
		cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, orDefault(st.Reason, string(v1.TaskRunReasonFailed)), st.Message
	case plan.PhaseSkipped:
		cond = skippedCondition(st)
	case plan.PhaseRunning:
		cond.Status = corev1.ConditionUnknown
		if managed(tr) {
			cond.Reason, cond.Message = string(v1.TaskRunReasonRunning), runningMessage
		} else {
			// Tekton rewrites anything else to exactly this while the TaskRun is pending.
			cond.Reason, cond.Message = string(v1.TaskRunReasonPending), pendingMessage(t.TaskRun)
		}
	default:
		cond.Status, cond.Reason, cond.Message = corev1.ConditionUnknown, string(v1.TaskRunReasonPending), pendingMessage(t.TaskRun)
	}
	if cond.Status != corev1.ConditionUnknown {
		s.CompletionTime = st.CompletionTime
		if s.CompletionTime == nil {
			s.CompletionTime = firstTime(existingCompletion(tr), &in.Now)
		}
	}
	setCondition(s, cond, in.Now)
}

// skippedCondition: Tekton creates no TaskRun for a skipped pipeline task and lists it in
// the PipelineRun's status.skippedTasks with a SkippingReason. Our TaskRun exists from the
// start; one that never ran is not written and pkg/reconciler deletes it once the
// CustomRun's summary records the skip. One that ran in an earlier attempt of the
// CustomRun is kept for its history, so it must end, and must not claim success: it ends
// Succeeded=False with reason TaskRunSkipped (in the style of TaskRunCancelled/
// TaskRunTimeout, which also mean "did not run to completion") and the SkippingReason as
// the message. The CustomRun's summary says "Skipped", and the CustomRun counts it as
// skipped, not failed, as a PipelineRun does.
func skippedCondition(st plan.TaskState) apis.Condition {
	msg := orDefault(st.Reason, string(v1.WhenExpressionsSkip))
	if st.Message != "" {
		msg += ": " + st.Message
	}
	return apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: ReasonTaskRunSkipped, Message: msg}
}

func managed(tr *v1.TaskRun) bool {
	return tr != nil && tr.Spec.ManagedBy != nil && *tr.Spec.ManagedBy == TaskRunManagedBy
}

func existingCompletion(tr *v1.TaskRun) *metav1.Time {
	if tr == nil {
		return nil
	}
	return tr.Status.CompletionTime
}

func firstTime(ts ...*metav1.Time) *metav1.Time {
	for _, t := range ts {
		if t != nil && !t.IsZero() {
			c := *t
			return &c
		}
	}
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// attemptStatus is one retried attempt of a task inside the pod, as a retriesStatus entry.
func attemptStatus(t plan.Task, tr *v1.TaskRun, a plan.TaskState, podName string) v1.TaskRunStatus {
	s := v1.TaskRunStatus{}
	s.PodName = podName
	s.StartTime = a.StartTime
	s.CompletionTime = a.CompletionTime
	s.Results = a.Results
	s.Steps = stepStates(t, tr, &a, nil)
	at := metav1.Time{}
	if a.CompletionTime != nil {
		at = *a.CompletionTime
	}
	s.Conditions = []apis.Condition{{
		Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse,
		Reason: orDefault(a.Reason, string(v1.TaskRunReasonFailed)), Message: a.Message,
		LastTransitionTime: apis.VolatileTime{Inner: at},
	}}
	return s
}

// stateOf maps a reported phase to the summary state.
func stateOf(s v1.TaskRunStatus, st plan.TaskState) (plan.Phase, string) {
	switch st.Phase {
	case plan.PhaseSkipped:
		return plan.PhaseSkipped, orDefault(st.Reason, string(v1.WhenExpressionsSkip))
	case plan.PhaseRunning:
		return plan.PhaseRunning, string(v1.TaskRunReasonRunning)
	case plan.PhasePending, "":
		if s.StartTime != nil {
			return plan.PhaseRunning, string(v1.TaskRunReasonRunning)
		}
		return plan.PhasePending, string(v1.TaskRunReasonPending)
	}
	return stateOfStatus(s)
}

// stateOfStatus maps a stored status to the summary state.
func stateOfStatus(s v1.TaskRunStatus) (plan.Phase, string) {
	c := s.GetCondition(apis.ConditionSucceeded)
	switch {
	case c == nil || c.IsUnknown():
		if s.StartTime != nil {
			return plan.PhaseRunning, string(v1.TaskRunReasonRunning)
		}
		return plan.PhasePending, string(v1.TaskRunReasonPending)
	case c.IsTrue():
		return plan.PhaseSucceeded, c.Reason
	case c.Reason == ReasonTaskRunSkipped:
		return plan.PhaseSkipped, c.Reason
	case c.Reason == string(v1.TaskRunReasonCancelled):
		return plan.PhaseCancelled, c.Reason
	}
	return plan.PhaseFailed, c.Reason
}

// endingFor picks the reason and message a non-final task ends with.
func endingFor(end *Ending, t plan.Task, started bool) (string, string) {
	switch {
	case end.Culprit != "" && end.Culprit == t.Key:
		return string(end.CulpritReason), end.CulpritMessage
	case started && end.StartedReason != "":
		return string(end.StartedReason), end.StartedMessage
	}
	reason := end.TaskReason
	if reason == "" {
		reason = v1.TaskRunReasonCancelled
	}
	if reason == v1.TaskRunReasonCancelled {
		return string(reason), fmt.Sprintf("TaskRun %q was cancelled. %s", t.TaskRun, end.TaskMessage)
	}
	return string(reason), end.TaskMessage
}

// applySettled gives a TaskRun the final state the CustomRun's summary recorded for it,
// when nothing better is known any more (the pod and its log are gone) and the stored
// status is not final (a stale write, or a crash between the CustomRun's final status and
// its TaskRuns').
func applySettled(s *v1.TaskRunStatus, t plan.Task, ts TaskSummary, in Input) {
	var cond apis.Condition
	switch ts.State {
	case plan.PhaseSucceeded:
		cond = apis.Condition{Status: corev1.ConditionTrue, Reason: string(v1.TaskRunReasonSuccessful), Message: succeededMessage}
	case plan.PhaseSkipped:
		cond = apis.Condition{Status: corev1.ConditionFalse, Reason: ReasonTaskRunSkipped, Message: ts.Reason}
	case plan.PhaseCancelled:
		cond = apis.Condition{Status: corev1.ConditionFalse, Reason: string(v1.TaskRunReasonCancelled), Message: fmt.Sprintf("TaskRun %q was cancelled.", t.TaskRun)}
	default:
		cond = apis.Condition{Status: corev1.ConditionFalse, Reason: orDefault(ts.Reason, string(v1.TaskRunReasonFailed))}
	}
	applyEnding(s, t.TaskRun, in.PodName, cond.Reason, cond.Message, in.Now)
	cond.Type = apis.ConditionSucceeded
	setCondition(s, cond, in.Now)
}

// EndStatus ends a status as failed with reason and message at the given time, as an
// ending does (running and waiting steps are terminated).
func EndStatus(s *v1.TaskRunStatus, taskRun, podName, reason, message string, at metav1.Time) {
	applyEnding(s, taskRun, podName, reason, message, at)
}

// applyEnding ends a non-final status, terminating its running and waiting steps the way
// Tekton's terminateStepsInPod does.
func applyEnding(s *v1.TaskRunStatus, taskRun, podName, reason, message string, at metav1.Time) {
	setCondition(s, apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: reason, Message: message}, at)
	s.CompletionTime = &at
	for i := range s.Steps {
		step := &s.Steps[i]
		if step.Running == nil && step.Waiting == nil {
			continue
		}
		started := at
		if step.Running != nil {
			started = step.Running.StartedAt
		}
		step.Terminated = &corev1.ContainerStateTerminated{
			ExitCode: 1, StartedAt: started, FinishedAt: at, Reason: reason,
			Message: fmt.Sprintf("Step %s terminated as pod %s is terminated", step.Name, podName),
		}
		step.TerminationReason = reason
		step.Running, step.Waiting = nil, nil
	}
}

// setCondition sets the Succeeded condition, keeping the stored transition time when
// nothing else changed (as knative's condition manager does).
func setCondition(s *v1.TaskRunStatus, c apis.Condition, now metav1.Time) {
	c.LastTransitionTime = apis.VolatileTime{Inner: now}
	var conds duckv1.Conditions
	for _, old := range s.Conditions {
		if old.Type != c.Type {
			conds = append(conds, old)
			continue
		}
		if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message && old.Severity == c.Severity {
			c.LastTransitionTime = old.LastTransitionTime
		}
	}
	s.Conditions = append(conds, c)
}

// benignWaiting are the waiting reasons of a container that is simply not running yet.
var benignWaiting = map[string]bool{"": true, "ContainerCreating": true, "PodInitializing": true}

// stepStates lists a task's steps: the reported step state where there is one (a step
// container runs the entrypoint, which waits for its turn, so the container's own state
// says nothing about the step), the container's state where it failed to start or died.
func stepStates(t plan.Task, tr *v1.TaskRun, st *plan.TaskState, pod *corev1.Pod) []v1.StepState {
	var out []v1.StepState
	anything := st != nil && st.Phase != plan.PhasePending && st.Phase != ""
	for i, container := range t.Steps {
		ss := reportedStep(st, i, container)
		cs := containerStatus(pod, container)
		s := v1.StepState{Name: stepName(i, ss, tr), Container: container}
		if cs != nil {
			s.ImageID = cs.ImageID
		}
		switch {
		case ss != nil && (ss.CompletionTime != nil || ss.ExitCode != nil):
			exit := int32(0)
			if ss.ExitCode != nil {
				exit = *ss.ExitCode
			}
			reason := "Completed"
			if exit != 0 {
				reason = "Error"
			}
			finished := firstTime(ss.CompletionTime, ss.StartTime)
			started := firstTime(ss.StartTime, ss.CompletionTime)
			term := &corev1.ContainerStateTerminated{ExitCode: exit, Reason: reason}
			if started != nil {
				term.StartedAt, term.FinishedAt = *started, *finished
			}
			s.Terminated = term
			s.TerminationReason = ss.Reason
			s.Results = ss.Results
		case ss != nil && ss.StartTime != nil:
			s.Running = &corev1.ContainerStateRunning{StartedAt: *ss.StartTime}
		case ss == nil && st != nil && st.Phase == plan.PhaseSkipped:
			// The task was skipped before its steps ran: the container's exit is the
			// entrypoint's, not the step's. Shown as a step skipped inside a task is.
			term := &corev1.ContainerStateTerminated{Reason: "Completed"}
			if done := firstTime(st.CompletionTime, st.StartTime); done != nil {
				term.StartedAt, term.FinishedAt = *done, *done
			}
			s.Terminated = term
			s.TerminationReason = tektonpod.TerminationReasonSkipped
		case cs != nil && cs.State.Terminated != nil:
			s.Terminated = cs.State.Terminated.DeepCopy()
			s.TerminationReason = cs.State.Terminated.Reason
			anything = true
		case cs != nil && cs.State.Waiting != nil && !benignWaiting[cs.State.Waiting.Reason]:
			s.Waiting = cs.State.Waiting.DeepCopy()
			anything = true
		default:
			s.Waiting = &corev1.ContainerStateWaiting{}
		}
		out = append(out, s)
	}
	if !anything {
		return nil
	}
	return out
}

func reportedStep(st *plan.TaskState, i int, container string) *plan.StepState {
	if st == nil {
		return nil
	}
	for j := range st.Steps {
		if st.Steps[j].Container == container {
			return &st.Steps[j]
		}
	}
	if i < len(st.Steps) && st.Steps[i].Container == "" {
		return &st.Steps[i]
	}
	return nil
}

func stepName(i int, ss *plan.StepState, tr *v1.TaskRun) string {
	if ss != nil && ss.Name != "" {
		return ss.Name
	}
	if tr != nil && tr.Spec.TaskSpec != nil && i < len(tr.Spec.TaskSpec.Steps) && tr.Spec.TaskSpec.Steps[i].Name != "" {
		return tr.Spec.TaskSpec.Steps[i].Name
	}
	return fmt.Sprintf("unnamed-%d", i)
}

func sidecarStates(t plan.Task, tr *v1.TaskRun, pod *corev1.Pod) []v1.SidecarState {
	var out []v1.SidecarState
	for i, container := range t.Sidecars {
		cs := containerStatus(pod, container)
		if cs == nil {
			continue
		}
		name := container
		if tr != nil && tr.Spec.TaskSpec != nil && i < len(tr.Spec.TaskSpec.Sidecars) && tr.Spec.TaskSpec.Sidecars[i].Name != "" {
			name = tr.Spec.TaskSpec.Sidecars[i].Name
		}
		out = append(out, v1.SidecarState{ContainerState: *cs.State.DeepCopy(), Name: name, Container: container, ImageID: cs.ImageID})
	}
	return out
}

func containerStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	if pod == nil {
		return nil
	}
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == name {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}
