// Package plan is the contract between the build side (which writes a Plan into the
// Pod) and the in-pod entrypoints (which read it), and between the entrypoints and
// the controller (which reads TaskStates back through the reporter container's log).
//
// Why a plan at all: Tekton's pod builder already tells each step container what to
// wait for inside its own Task (-wait_file/-post_file). What one Tekton pod per Task
// never needed is the order between Tasks, `when`, retries, Task/Pipeline timeouts and
// finally; those live here, once per pod, instead of being spread over container args.
//
// Layout inside the Pod (all paths are flags of cmd/entrypoint so tests can use temp dirs):
//
//	/tekton/pip/plan/plan.json    the Plan, projected by a downward API volume from the
//	                              pod annotation AnnotationPlan (read-only, frozen at creation)
//	/tekton/pip/state             one emptyDir shared by the whole pod, mounted read-only in
//	                              every step container ...
//	/tekton/pip/state/<task key>  ... except this task's own subdirectory (subPath), mounted
//	                              read-write: a Task can publish only its own state and results.
//	/tekton/pip/state/.run/start  written by the init container: the pipeline's start (RFC3339Nano);
//	                              pipeline/tasks/finally timeouts count from it.
//
// Inside a task's own state directory (StateDir/<key>):
//
//	status.json                   the TaskState, replaced atomically (write tmp + rename) by the
//	                              task's leader (its first step's entrypoint); terminal once
//	                              Phase.IsTerminal().
//	results/<name>                the task's results, copied from its /tekton/results after its
//	                              final attempt, before status.json turns terminal.
//	steps/<index>.json            one StepState per step, written by that step's entrypoint.
package plan

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// AnnotationPlan holds the JSON Plan on the Pod; the downward API projects it to PlanFile.
	AnnotationPlan = "pipelineinpod.tekton.dev/plan"

	// Default in-pod paths (flags of cmd/entrypoint).
	PlanDir  = "/tekton/pip/plan"
	PlanFile = "/tekton/pip/plan/plan.json"
	StateDir = "/tekton/pip/state"
	// RunDirName is the pipeline-wide directory under StateDir; a leading dot can never
	// collide with a task key, which is a DNS-1123 label.
	RunDirName = ".run"

	// ReporterContainer is the container that streams TaskStates to its log; its name
	// starts with "step-" because Tekton's stopSidecars stops every other container of a
	// pod that a finished TaskRun names (docs/design.md hazard 2).
	ReporterContainer = "step-pip-reporter"

	// ReadyAnnotation and ReadyAnnotationValue are Tekton's pod annotation that releases
	// the first step of a task with sidecars (projected to /tekton/downward/ready). Tekton
	// keeps them unexported in pkg/pod, and its UpdateReady only replaces an annotation
	// that exists, so the controller and the pod assembler share this one definition.
	ReadyAnnotation      = "tekton.dev/ready"
	ReadyAnnotationValue = "READY"
)

// Plan is everything the entrypoints need to run a Pipeline's tasks in one Pod.
type Plan struct {
	// Tasks in a topological order of the DAG, then the finally tasks.
	Tasks []Task `json:"tasks"`
	// Timeouts measured from the pipeline start (RunDir/start). Nil means none.
	PipelineTimeout *metav1.Duration `json:"pipelineTimeout,omitempty"`
	TasksTimeout    *metav1.Duration `json:"tasksTimeout,omitempty"`
	// FinallyTimeout counts from the moment the first finally task may start.
	FinallyTimeout *metav1.Duration `json:"finallyTimeout,omitempty"`
}

// Task is one child TaskRun: a PipelineTask, or one instance of a matrixed PipelineTask.
type Task struct {
	// Key names the task inside the pod: its state directory and its containers' prefix.
	// A DNS-1123 label, unique in the plan.
	Key string `json:"key"`
	// PipelineTask is the name in the Pipeline; matrix instances share it.
	PipelineTask string `json:"pipelineTask"`
	// TaskRun is the child TaskRun's name, so $(context.taskRun.name) and the controller agree.
	TaskRun string `json:"taskRun"`
	Finally bool   `json:"finally,omitempty"`

	// RunAfter holds the keys of the tasks that must be terminal before this one starts:
	// runAfter, result references and (for finally) every DAG task.
	RunAfter []string `json:"runAfter,omitempty"`
	// ResultsFrom holds the PipelineTask names whose results this task's params, when
	// or steps reference; if any of them did not succeed, this task is skipped with
	// v1.MissingResultsSkip (or, for a DAG task whose parent failed, see the rules in the
	// entrypoint).
	ResultsFrom []string `json:"resultsFrom,omitempty"`
	// TasksStatus, for a finally task, is what its $(tasks.status) aggregates when that
	// is not every non-finally task of the plan: in a flattened child pipeline, or in a
	// pipeline that holds one.
	TasksStatus *TasksStatusScope `json:"tasksStatus,omitempty"`
	// When still holds run-time references ($(tasks.X.results.Y), $(tasks.X.status), ...);
	// compile-time ones (params, context) are already substituted.
	When v1.WhenExpressions `json:"when,omitempty"`

	// OnError "continue" lets the pipeline go on when this task fails (Tekton's
	// PipelineTask onError): the task ends Failed with reason FailureIgnored.
	OnError v1.PipelineTaskOnErrorType `json:"onError,omitempty"`

	Retries int              `json:"retries,omitempty"`
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Steps lists the task's step containers in order (container names, "step-" prefixed).
	Steps []string `json:"steps"`
	// Sidecars lists the task's sidecar containers (also "step-" prefixed, see
	// ReporterContainer).
	Sidecars []string `json:"sidecars,omitempty"`
	// Results declares the task's results, so their files can be typed and copied.
	Results []Result `json:"results,omitempty"`
}

// TasksStatusScope is the DAG of one pipeline, flattened into the plan, as Tekton sees it
// for $(tasks.status): its own tasks, and the pipelines in it, each one pipeline task
// that fails when its PipelineRun would fail.
type TasksStatusScope struct {
	// Tasks are the keys of the pipeline's own DAG tasks.
	Tasks []string `json:"tasks,omitempty"`
	// Children are the keys of the tasks of the pipelines flattened into the DAG (their
	// finally tasks too). One that fails, its failure not ignored, fails its pipeline;
	// their skips do not count: a PipelineRun with skipped tasks succeeds.
	Children []string `json:"children,omitempty"`
}

// Result is a declared task result.
type Result struct {
	Name string         `json:"name"`
	Type v1.ResultsType `json:"type,omitempty"`
	// Value is the TaskResult's value when it is taken from a step result
	// ("$(steps.<step>.results.<name>)"): Tekton resolves those in its controller from
	// termination messages, which this project does not use for results (a pod has
	// 12 KiB of them in all),
	// so the task's leader reads the step's result file instead.
	Value string `json:"value,omitempty"`
}

// Phase of a task: inside the pod (TaskState) and in the CustomRun's per-task summary,
// which the controller derives from it.
type Phase string

const (
	PhasePending   Phase = "Pending"
	PhaseRunning   Phase = "Running"
	PhaseSucceeded Phase = "Succeeded"
	PhaseFailed    Phase = "Failed"
	PhaseSkipped   Phase = "Skipped"
	// PhaseCancelled is the controller's only: a task that the end of its CustomRun
	// (cancel, timeout, a pod failure) stopped. The entrypoints never write it; they
	// report a task cancelled inside the pod as Failed with Tekton's cancel reason.
	PhaseCancelled Phase = "Cancelled"
)

// IsTerminal tells whether the task will not change any more.
func (p Phase) IsTerminal() bool {
	return p == PhaseSucceeded || p == PhaseFailed || p == PhaseSkipped || p == PhaseCancelled
}

// TaskState is what a task's leader publishes in status.json and what the reporter
// streams to the controller.
type TaskState struct {
	Key   string `json:"key"`
	Phase Phase  `json:"phase"`
	// Reason uses Tekton's vocabulary: v1.TaskRunReason (Succeeded, Failed,
	// TaskRunTimeout, ...) for tasks that ran, v1.SkippingReason for skipped ones.
	Reason         string       `json:"reason,omitempty"`
	Message        string       `json:"message,omitempty"`
	StartTime      *metav1.Time `json:"startTime,omitempty"`
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// RetryCount is the attempt now running or last run (0 for the first).
	RetryCount int `json:"retryCount,omitempty"`
	// Attempts holds the states of the failed attempts that were retried, oldest first.
	Attempts []TaskState        `json:"attempts,omitempty"`
	Steps    []StepState        `json:"steps,omitempty"`
	Results  []v1.TaskRunResult `json:"results,omitempty"`
}

// StepState is one step's outcome in the latest attempt.
type StepState struct {
	Name      string `json:"name"`
	Container string `json:"container"`
	ExitCode  *int32 `json:"exitCode,omitempty"`
	// Reason: Completed, Error, TimeoutExceeded, Skipped (not run), Cancelled.
	Reason         string       `json:"reason,omitempty"`
	StartTime      *metav1.Time `json:"startTime,omitempty"`
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Results holds step results ($(steps.X.results.Y)), if any.
	Results []v1.TaskRunResult `json:"results,omitempty"`
}

// ReportLine is one line of the reporter container's log (JSON lines). A line carries
// one task's latest state, a snapshot, or the final marker; the reader folds them, last
// wins, and a terminal state is final. The log, unlike termination messages (12 KiB per
// pod), holds results of any size Tekton allows, within the bounds of Limits.
type ReportLine struct {
	Task *TaskState `json:"task,omitempty"`
	// Snapshot re-prints terminal states already printed (all of them, over as many
	// lines as MaxReportBytes takes), so that the log file the kubelet serves holds them
	// after it rotated the lines that first carried them away (docs/design.md, "The
	// results channel").
	Snapshot []TaskState `json:"snapshot,omitempty"`
	// Done is set on the last line, once every task of the plan is terminal.
	Done bool `json:"done,omitempty"`
}

// TaskDir is a task's state directory.
func TaskDir(stateDir, key string) string { return filepath.Join(stateDir, key) }

// StatusFile is a task's status.json.
func StatusFile(stateDir, key string) string { return filepath.Join(stateDir, key, "status.json") }

// ResultsDir is where a task's final results are published.
func ResultsDir(stateDir, key string) string { return filepath.Join(stateDir, key, "results") }

// StepFile is one step's state file.
func StepFile(stateDir, key string, step int) string {
	return filepath.Join(stateDir, key, "steps", fmt.Sprintf("%d.json", step))
}

// StartFile holds the pipeline's start time.
func StartFile(stateDir string) string { return filepath.Join(stateDir, RunDirName, "start") }

// Encode renders a Plan for the pod annotation.
func (p *Plan) Encode() (string, error) {
	b, err := json.Marshal(p)
	return string(b), err
}

// Decode parses a Plan.
func Decode(b []byte) (*Plan, error) {
	p := &Plan{}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("decoding plan: %w", err)
	}
	return p, nil
}

// Task returns the task with the given key.
func (p *Plan) Task(key string) (*Task, bool) {
	for i := range p.Tasks {
		if p.Tasks[i].Key == key {
			return &p.Tasks[i], true
		}
	}
	return nil, false
}
