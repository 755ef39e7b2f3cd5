package reconciler

import (
	"context"
	"errors"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// Preparer runs the stages that turn a CustomRun into what one attempt creates (resolve,
// compile, build). It sits behind an interface so that the reconciler's transitions can
// be tested with fixed outputs, and so that this package does not depend on the stages.
type Preparer interface {
	Prepare(ctx context.Context, cr *v1beta1.CustomRun) (*Prepared, error)
}

// Prepared is a resolved and compiled run, before its pod is built: the pod needs the
// UIDs of the child TaskRuns ($(context.taskRun.uid)), which exist only once they are
// created.
type Prepared struct {
	PipelineName string
	// Results is the Pipeline's results spec.
	Results []v1.PipelineResult
	// Skipped are pipeline tasks skipped before anything runs (they get no TaskRun).
	Skipped []v1.SkippedTask
	// Matrixed names the pipeline tasks fanned out by a matrix: their results aggregate.
	Matrixed []string
	// TaskRuns are the child TaskRuns to create.
	TaskRuns []*v1.TaskRun
	// Build makes the attempt's pod and PVCs.
	Build func(ctx context.Context, taskRunUIDs map[string]types.UID) (*Built, error)
}

// Built is the rest of what an attempt creates.
type Built struct {
	Pod  *corev1.Pod
	PVCs []*corev1.PersistentVolumeClaim
	Plan *plan.Plan
}

// ErrInProgress is wrapped by a Preparer error that means "not yet": a remote resolution
// (ResolutionRequest) is still running. The reconciler requeues.
var ErrInProgress = errors.New("resolution in progress")

// PermanentError is a Preparer error that no retry will fix: the run fails with Reason
// and the error's message, which names the field at fault.
type PermanentError struct {
	Reason string
	Err    error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Reasons of permanent preparation failures.
const (
	ReasonResolutionFailed = "ResolutionFailed"
	ReasonValidationFailed = "ValidationFailed"
	// ReasonResolving is the running reason while a remote resolution is in progress,
	// Tekton's PipelineRun reason for the same wait.
	ReasonResolving = string(v1.PipelineRunReasonResolvingPipelineRef)
)
