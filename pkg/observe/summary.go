package observe

import (
	"encoding/json"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// Summary is the CustomRun's status.extraFields: what `tkn customrun describe` and users
// need to find the child TaskRuns and the pod, without listing anything.
type Summary struct {
	// PipelineName is the Pipeline that runs (empty for an inline pipelineSpec).
	PipelineName string `json:"pipelineName,omitempty"`
	// PodName is this attempt's pod, set once it was created: a recorded pod that is
	// missing was deleted, not yet to be created.
	PodName  string        `json:"podName,omitempty"`
	TaskRuns []TaskSummary `json:"taskRuns,omitempty"`
	// SkippedTasks are pipeline tasks skipped before anything ran, which have no TaskRun
	// (a matrix over an empty array), as in a PipelineRun's status.skippedTasks.
	SkippedTasks []v1.SkippedTask `json:"skippedTasks,omitempty"`
	// LogUnreadableSince is when reading the reporter's log of PodName began to fail, and
	// LogUnreadableSeen when the controller last saw it fail; both unset while it can be
	// read. Kept here, the bound on an unreachable kubelet survives a controller restart.
	LogUnreadableSince *metav1.Time `json:"logUnreadableSince,omitempty"`
	LogUnreadableSeen  *metav1.Time `json:"logUnreadableSeen,omitempty"`
	// PodDigests are the digests ("sha256:<hex>") of the annotations of PodName the
	// controller reads the run back from (its plan and run record), by annotation name,
	// as created: a pod whose annotations no longer match was changed by someone else.
	PodDigests map[string]string `json:"podDigests,omitempty"`
}

// TaskSummary is one child TaskRun.
type TaskSummary struct {
	Name             string `json:"name"`
	PipelineTaskName string `json:"pipelineTaskName"`
	// MemberOf is "tasks" or "finally", as in the tekton.dev/memberOf label.
	MemberOf string     `json:"memberOf"`
	State    plan.Phase `json:"state"`
	Reason   string     `json:"reason,omitempty"`
}

// Summarize lists the tasks of an observation.
func (o *Observation) Summarize(pipelineName, podName string, skipped []v1.SkippedTask) Summary {
	s := Summary{PipelineName: pipelineName, PodName: podName, SkippedTasks: skipped}
	for _, t := range o.Tasks {
		member := "tasks"
		if t.Task.Finally {
			member = "finally"
		}
		s.TaskRuns = append(s.TaskRuns, TaskSummary{
			Name: t.Task.TaskRun, PipelineTaskName: t.Task.PipelineTask, MemberOf: member, State: t.State, Reason: t.Reason,
		})
	}
	return s
}

// Encode renders the summary as extraFields. It goes through a generic map because the
// API server hands schemaless fields back with their keys sorted: encoding them sorted
// here keeps a recomputed summary byte-equal to the stored one, so an unchanged summary
// is never written again.
func (s Summary) Encode() (runtime.RawExtension, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return runtime.RawExtension{}, err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return runtime.RawExtension{}, err
	}
	b, err = json.Marshal(generic)
	return runtime.RawExtension{Raw: b}, err
}

// DecodeSummary reads extraFields back; an empty or foreign value gives an empty Summary.
func DecodeSummary(raw runtime.RawExtension) Summary {
	var s Summary
	if len(raw.Raw) > 0 {
		_ = json.Unmarshal(raw.Raw, &s)
	}
	return s
}

// Task finds a task's entry by TaskRun name.
func (s Summary) Task(taskRun string) (TaskSummary, bool) {
	for _, t := range s.TaskRuns {
		if t.Name == taskRun {
			return t, true
		}
	}
	return TaskSummary{}, false
}

// Settled returns the final task states of the summary, by TaskRun name.
func (s Summary) Settled() map[string]TaskSummary {
	m := map[string]TaskSummary{}
	for _, t := range s.TaskRuns {
		if t.State.IsTerminal() {
			m[t.Name] = t
		}
	}
	return m
}
