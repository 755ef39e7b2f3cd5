package reconciler

import (
	"context"
	"fmt"
	"time"

	apisconfig "github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"
	pkgreconciler "knative.dev/pkg/reconciler"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// ending is how the current run attempt ends before its tasks do: the CustomRun was
// cancelled or timed out. Nil when it goes on.
func ending(ctx context.Context, cr *v1beta1.CustomRun, now metav1.Time) *observe.Ending {
	switch {
	case cr.IsCancelled():
		return observe.Cancelled(cr.Name, string(cr.Spec.StatusMessage))
	case timedOut(ctx, cr, now):
		return observe.TimedOut(cr.Name, timeoutOf(ctx, cr))
	}
	return nil
}

// conclude decides the CustomRun of a run attempt that is over: it succeeds, fails, or is
// retried with a new pod.
func (r *Reconciler) conclude(cr *v1beta1.CustomRun, a *runAttempt, obs *observe.Observation, now metav1.Time) pkgreconciler.Event {
	verdict := obs.Verdict()
	results, err := observe.PipelineResults(a.record.Results, obs.Tasks, a.record.Skipped, a.record.matrixed())
	if err != nil && verdict.Succeeded {
		verdict = observe.Verdict{Reason: observe.ReasonCouldntGetPipelineResult,
			Message: fmt.Sprintf("Failed to get PipelineResult from TaskRun Results for CustomRun %s: %s", cr.Name, err)}
	}
	cr.Status.Results = results
	if !verdict.Succeeded && !cr.IsCancelled() && a.number < cr.Spec.Retries {
		r.retry(cr, verdict, now)
		return controller.NewRequeueImmediately()
	}
	// The run is over: its pod's log need not be followed any more.
	r.forget(cr)
	if verdict.Succeeded {
		cr.Status.MarkCustomRunSucceeded(verdict.Reason, "%s", verdict.Message)
		cr.Status.CompletionTime = &now
	} else {
		r.fail(cr, verdict.Reason, verdict.Message)
	}
	if observe.EndsPod(verdict.Reason) {
		// Deleted by the next reconcile, once this final status is stored: if the
		// controller stops in between, the status still says why the run ended.
		return controller.NewRequeueImmediately()
	}
	return nil
}

// retry archives the failed run attempt in status.retriesStatus, as Tekton does for a
// TaskRun, and starts the next one: a new pod (pod-retry<N>), the same child TaskRuns.
func (r *Reconciler) retry(cr *v1beta1.CustomRun, verdict observe.Verdict, now metav1.Time) {
	failed := cr.Status.DeepCopy()
	failed.RetriesStatus = nil
	failed.MarkCustomRunFailed(verdict.Reason, "%s", verdict.Message)
	failed.CompletionTime = &now
	cr.Status.RetriesStatus = append(cr.Status.RetriesStatus, *failed)
	cr.Status.StartTime = &now
	cr.Status.CompletionTime = nil
	cr.Status.Results = nil
	cr.Status.ExtraFields.Raw = nil
	_ = setSummary(cr, observe.Summary{})
	cr.Status.MarkCustomRunRunning(observe.ReasonToBeRetried, "attempt %d of %d failed (%s): %s",
		len(cr.Status.RetriesStatus), cr.Spec.Retries+1, verdict.Reason, verdict.Message)
}

// fail ends the run as failed, now.
func (r *Reconciler) fail(cr *v1beta1.CustomRun, reason, message string) {
	cr.Status.MarkCustomRunFailed(reason, "%s", message)
	now := r.now()
	cr.Status.CompletionTime = &now
}

// finish keeps a finished CustomRun's world consistent: stops pods that must not keep
// running, and brings back any child TaskRun whose final status was lost.
func (r *Reconciler) finish(ctx context.Context, cr *v1beta1.CustomRun) pkgreconciler.Event {
	defer r.forget(cr)
	a := newRunAttempt(cr)
	if err := r.deleteEndedPods(ctx, cr, a.number+1); err != nil {
		return err
	}
	var err error
	if a.taskRuns, err = r.childTaskRuns(cr); err != nil {
		return err
	}
	if a.taskRuns, err = r.deleteSkippedTaskRuns(ctx, a.recorded, a.taskRuns); err != nil {
		return err
	}
	allFinal := true
	for _, tr := range a.taskRuns {
		if !tr.IsDone() {
			allFinal = false
		}
	}
	if allFinal {
		return nil
	}
	if a.pod, err = r.getPod(ctx, cr.Namespace, a.podName); err != nil {
		return err
	}
	a.tasks = observe.TasksFromTaskRuns(a.taskRuns)
	var report map[string]plan.TaskState
	var done bool
	if a.pod != nil {
		// A pod whose plan cannot be read, or was changed after creation, keeps the tasks
		// its TaskRuns stand for and is not read from; a log that cannot be read, the
		// stored statuses.
		if err := a.readPlan(); err == nil {
			report, done, _ = r.readReport(ctx, a.pod)
		}
	}
	at := r.now()
	if cr.Status.CompletionTime != nil {
		at = metav1.NewTime(cr.Status.CompletionTime.Rfc3339Copy().Time)
	}
	c := cr.Status.GetCondition(apis.ConditionSucceeded)
	end := &observe.Ending{
		Reason: c.Reason, Message: c.Message, TaskReason: v1.TaskRunReasonCancelled,
		TaskMessage: fmt.Sprintf("TaskRun cancelled as the CustomRun it belongs to has finished (%s).", c.Reason),
	}
	in := a.input(report, done, end, at, r.Bounds)
	in.Settled = a.recorded.Settled()
	obs := observe.Observe(in)
	keepRefused(obs, storedRefusals(a.taskRuns, in.PodName))
	refs, err := r.syncTaskRuns(ctx, in, obs)
	for _, ref := range refs {
		// Written again only when the run is looked at again for another reason.
		logging.FromContext(ctx).Warnw("The API server refused the final status of a TaskRun of a finished run", "taskRun", ref.taskRun, "standInStored", ref.stored, "message", ref.message)
	}
	return err
}

func (r *Reconciler) now() metav1.Time {
	c := r.Clock
	if c == nil {
		c = clock.RealClock{}
	}
	// Seconds, the API's precision: a time written and read back must compare equal.
	return metav1.NewTime(c.Now().Truncate(time.Second))
}

func (r *Reconciler) interval() time.Duration {
	if r.RequeueInterval > 0 {
		return r.RequeueInterval
	}
	return DefaultRequeueInterval
}

// requeueAfter is when a running CustomRun is looked at again: the requeue interval, or
// sooner when its timeout falls before.
func (r *Reconciler) requeueAfter(ctx context.Context, cr *v1beta1.CustomRun, now metav1.Time) time.Duration {
	d := r.interval()
	if t := timeoutOf(ctx, cr); t != apisconfig.NoTimeoutDuration && cr.Status.StartTime != nil {
		if left := cr.Status.StartTime.Add(t).Sub(now.Time) + time.Second; left > 0 && left < d {
			d = left
		}
	}
	return d
}

// timeoutOf is the timeout of one run attempt: spec.timeout (which Tekton sets from the
// pipeline task), else the inline spec's timeouts.pipeline, else the default of ctx's
// Tekton configuration (config-defaults' default-timeout-minutes), as Tekton defaults a
// PipelineRun's. Zero means none.
func timeoutOf(ctx context.Context, cr *v1beta1.CustomRun) time.Duration {
	if cr.Spec.Timeout != nil {
		return cr.Spec.Timeout.Duration
	}
	if s, err := v1alpha1.SpecOf(cr); err == nil && s.Timeouts != nil && s.Timeouts.Pipeline != nil {
		return s.Timeouts.Pipeline.Duration
	}
	return time.Duration(apisconfig.FromContextOrDefaults(ctx).Defaults.DefaultTimeoutMinutes) * time.Minute
}

// timedOut tells a run that has had its whole timeout. The stored start time has
// second precision (metav1.Time is serialized as RFC 3339), so the run may have started
// up to a second after it: the run gets that second too, never less than its timeout.
func timedOut(ctx context.Context, cr *v1beta1.CustomRun, now metav1.Time) bool {
	t := timeoutOf(ctx, cr)
	if t == apisconfig.NoTimeoutDuration || cr.Status.StartTime == nil {
		return false
	}
	return now.Sub(cr.Status.StartTime.Time) >= t+time.Second
}
