package reconciler

import (
	"errors"
	"fmt"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// Statuses the API server refuses for good. A child TaskRun's status can be refused
// however often it is written: results or a large script copied into status.taskSpec
// bring the object over etcd's request limit (docs/design.md hazard 7), or a webhook
// refuses it. Retrying such a write would hold the run (its cancel and timeout too)
// forever. Instead the TaskRun gets a failure it can store in place of its status (a
// stand-in, smaller at each try), and the attempt ends with ReasonTaskRunStatusRefused,
// naming the task and the API server's words. A stored stand-in names the attempt's pod,
// so a reconcile after a restart finds it and ends the attempt the same way.

// tooLargeMessages are the words the API server passes on when etcd refuses a request as
// too large: it answers 500 with etcd's error text, not a status reason
// (k8s.io/apiserver endpoints/handlers isTooLargeError compares the same texts).
var tooLargeMessages = []string{"etcdserver: request is too large", "trying to send message larger than max"}

// permanentlyRefused tells a write the API server refuses whatever the number of tries:
// the object is invalid (its schema, an admission webhook: 400 or 422) or too large (the
// request body limit, 413, or etcd's). Conflicts, timeouts and an unreachable webhook
// are not: they are retried.
func permanentlyRefused(err error) bool {
	if err == nil {
		return false
	}
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err) {
		return true
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	for _, m := range tooLargeMessages {
		if strings.Contains(status.Status().Message, m) {
			return true
		}
	}
	return false
}

// maxCauseBytes bounds the API server's words kept in a status message: an invalid
// object's error can list many fields.
const maxCauseBytes = 1024

func refusalCause(err error) string {
	s := err.Error()
	if len(s) > maxCauseBytes {
		s = s[:maxCauseBytes] + "..."
	}
	return s
}

// refusal is a child TaskRun's status refused for good, and its stand-in.
type refusal struct {
	taskRun string
	// message is the stand-in's condition message (observe.RefusedMessage).
	message string
	// status is the last stand-in tried; stored tells whether the API server took it.
	status v1.TaskRunStatus
	stored bool
}

// standIns are the failures tried in place of a refused status, in order: the status
// without what makes one large (results, status.taskSpec, provenance, artifacts, step
// results and termination messages, the same in retriesStatus), then the bare failure,
// which has no start time either, so that a TaskRun still pending may take it.
func standIns(desired v1.TaskRunStatus, podName, message string, now metav1.Time) []v1.TaskRunStatus {
	trimmed := *desired.DeepCopy()
	trimStatus(&trimmed)
	for i := range trimmed.RetriesStatus {
		trimStatus(&trimmed.RetriesStatus[i])
	}
	if podName != "" {
		trimmed.PodName = podName
	}
	observe.EndStatus(&trimmed, "", podName, observe.ReasonTaskRunStatusRefused, message, now)

	bare := v1.TaskRunStatus{}
	bare.PodName = trimmed.PodName
	bare.CompletionTime = trimmed.CompletionTime
	bare.Conditions = trimmed.Conditions
	return []v1.TaskRunStatus{trimmed, bare}
}

func trimStatus(s *v1.TaskRunStatus) {
	s.Results = nil
	s.TaskSpec = nil
	s.Provenance = nil
	s.Artifacts = nil
	for i := range s.Steps {
		s.Steps[i].Results = nil
		s.Steps[i].Provenance = nil
		s.Steps[i].Inputs = nil
		s.Steps[i].Outputs = nil
		if t := s.Steps[i].Terminated; t != nil {
			t.Message = ""
		}
	}
}

// storedRefusals are the stand-ins written for the attempt whose pod is podName, by
// TaskRun name.
func storedRefusals(trs []*v1.TaskRun, podName string) map[string]refusal {
	out := map[string]refusal{}
	if podName == "" {
		return out
	}
	for _, tr := range trs {
		c := tr.Status.GetCondition(apis.ConditionSucceeded)
		if c == nil || c.Reason != observe.ReasonTaskRunStatusRefused || tr.Status.PodName != podName {
			continue
		}
		out[tr.Name] = refusal{taskRun: tr.Name, message: c.Message, status: *tr.Status.DeepCopy(), stored: true}
	}
	return out
}

// refusalEnding is the ending of an attempt with refused statuses: the first task's (in
// the plan's order) that has one. Nil when none has.
func refusalEnding(tasks []plan.Task, refused map[string]refusal, podName string) *observe.Ending {
	for _, t := range tasks {
		if ref, ok := refused[t.TaskRun]; ok {
			return observe.StatusRefused(t, podName, ref.message)
		}
	}
	return nil
}

// keepRefused makes the outcome of each task with a refused status its stand-in: not
// written again, failed in the summary.
func keepRefused(obs *observe.Observation, refused map[string]refusal) {
	for i := range obs.Tasks {
		out := &obs.Tasks[i]
		ref, ok := refused[out.Task.TaskRun]
		if !ok {
			continue
		}
		out.Status = *ref.status.DeepCopy()
		out.State, out.Reason = plan.PhaseFailed, observe.ReasonTaskRunStatusRefused
		out.Write = false
	}
}

// refusedNote is what an ending decided otherwise (cancel, timeout, the pod's end) adds to
// its message about statuses refused on the way.
func refusedNote(refs []refusal) string {
	if len(refs) == 0 {
		return ""
	}
	note := fmt.Sprintf("; TaskRun %q: %s", refs[0].taskRun, refs[0].message)
	if len(refs) > 1 {
		note += fmt.Sprintf(" (and %d more TaskRuns)", len(refs)-1)
	}
	return note
}
