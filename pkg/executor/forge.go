package executor

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// attribute returns the state the reporter publishes for task t, given what t's own
// status.json says. A task's state directory is writable by its steps, so a step can
// write any status.json there; what that file claims about itself (its key) is never
// trusted. The state is attributed to the task whose directory it was read from, and a
// file that claims to be another task's is a forging attempt: the task that wrote it
// fails (terminally, so a later honest-looking file cannot undo it), with a message
// naming both tasks, and nothing of the file — phase, results, steps — is published.
// Failing the task rather than dropping the line is what a Tekton user would expect of
// a TaskRun whose steps tamper with its status: a visible failure on that TaskRun, never
// a silent change to another one's.
func attribute(t *plan.Task, st *plan.TaskState) (*plan.TaskState, bool) {
	if st == nil || st.Key == t.Key {
		return st, false
	}
	now := metav1.Now()
	return &plan.TaskState{
		Key:            t.Key,
		Phase:          plan.PhaseFailed,
		Reason:         v1.TaskRunReasonFailed.String(),
		Message:        fmt.Sprintf("task %q wrote a status.json that claims to be the state of task %q: a task may publish only its own state; refused as a forging attempt", t.Key, st.Key),
		StartTime:      st.StartTime,
		CompletionTime: &now,
		RetryCount:     st.RetryCount,
	}, true
}
