package executor

import (
	"errors"
	"fmt"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// decision is what a task's leader does once every task it waits for is terminal.
type decision struct {
	// skip is set when the task must not run.
	skip v1.SkippingReason
	// failReason/failMessage are set when the task fails without running.
	failReason, failMessage string
}

// gateInput is what a decision depends on, gathered by the leader.
type gateInput struct {
	plan   *plan.Plan
	task   *plan.Task
	states map[string]*plan.TaskState
	// start is the pipeline's start; now the moment of the decision.
	start, now time.Time
	// cancelled is set once the pod was asked to cancel.
	cancelled bool
}

// decide follows the order of Tekton's ResolvedPipelineTask.skip (DAG tasks) and
// IsFinallySkipped (finally tasks) in pkg/reconciler/pipelinerun/resources.
func decide(in gateInput) decision {
	t := in.task
	vals := newValues(in.plan, t, in.states, 0)
	whenOK, whenErr := vals.when(t.When)
	missing := missingResults(in)
	var celErr *celError
	celFailed := errors.As(whenErr, &celErr)
	failCEL := decision{
		failReason:  v1.PipelineRunReasonCELEvaluationFailed.String(),
		failMessage: fmt.Sprintf("when expressions of %q: %v", t.PipelineTask, whenErr),
	}

	if t.Finally {
		switch {
		case in.cancelled:
			return decision{skip: v1.StoppingSkip}
		case missing || (whenErr != nil && !celFailed):
			// Tekton skips a finally task whose result references cannot be resolved.
			return decision{skip: v1.MissingResultsSkip}
		case celFailed:
			// Tekton does not run the finally task and fails the PipelineRun.
			return failCEL
		case !whenOK:
			return decision{skip: v1.WhenExpressionsSkip}
		case expired(in.plan.PipelineTimeout, in.start, in.now):
			return decision{skip: v1.PipelineTimedOutSkip}
		}
		// FinallyTimedOutSkip cannot happen here: the finally timeout counts from the
		// moment finally tasks may start, which is this very gate.
		return decision{}
	}

	switch {
	// Tekton schedules every root task in its first reconcile, before anything can
	// fail; here a root's leader may look a moment after a sibling failed.
	case in.cancelled || (len(t.RunAfter) > 0 && dagFailed(in)):
		return decision{skip: v1.StoppingSkip}
	case celFailed:
		// Tekton evaluates CEL as soon as the references in it resolve and fails the
		// PipelineRun if it cannot; here the task fails and the pipeline stops.
		return failCEL
	case whenErr == nil && !whenOK:
		return decision{skip: v1.WhenExpressionsSkip}
	case parentSkipped(in):
		return decision{skip: v1.ParentTasksSkip}
	case missing:
		// Reached only when the producer was skipped by its own when expressions: a
		// failed producer stops the pipeline, any other skip cascades (above).
		return decision{skip: v1.MissingResultsSkip}
	case expired(in.plan.PipelineTimeout, in.start, in.now):
		return decision{skip: v1.PipelineTimedOutSkip}
	case expired(in.plan.TasksTimeout, in.start, in.now):
		return decision{skip: v1.TasksTimedOutSkip}
	case whenErr != nil:
		// Every producer succeeded and still a reference is unresolved (a declared
		// result was not written): Tekton fails the PipelineRun
		// with this reason; here the task fails and the pipeline stops.
		return decision{
			failReason:  v1.PipelineRunReasonInvalidTaskResultReference.String(),
			failMessage: fmt.Sprintf("when expressions of %q: %v", t.PipelineTask, whenErr),
		}
	}
	return decision{}
}

func dagFailed(in gateInput) bool {
	for _, t := range in.plan.Tasks {
		// A failure the pipeline task ignores (onError: continue) does not stop the run.
		if s := in.states[t.Key]; !t.Finally && s != nil && s.Phase == plan.PhaseFailed && s.Reason != v1.TaskRunReasonFailureIgnored.String() {
			return true
		}
	}
	return false
}

// parentSkipped: a parent skipped for any reason but its own when expressions
// (when-skips do not cascade, Tekton's skipBecauseParentTaskWasSkipped).
func parentSkipped(in gateInput) bool {
	for _, k := range in.task.RunAfter {
		if s := in.states[k]; s != nil && s.Phase == plan.PhaseSkipped && s.Reason != string(v1.WhenExpressionsSkip) {
			return true
		}
	}
	return false
}

// missingResults: some task whose results this task uses did not succeed.
func missingResults(in gateInput) bool {
	for _, name := range in.task.ResultsFrom {
		for _, t := range in.plan.Tasks {
			if t.PipelineTask != name {
				continue
			}
			if s := in.states[t.Key]; s == nil || s.Phase != plan.PhaseSucceeded {
				return true
			}
		}
	}
	return false
}

func expired(d *metav1.Duration, from, now time.Time) bool {
	return d != nil && d.Duration > 0 && now.Sub(from) > d.Duration
}
