// Package reconciler is the CustomRun reconciler of PipelineInPod: for every CustomRun of
// kind PipelineInPod it creates the child TaskRuns and the one pod of each attempt, and
// keeps the TaskRuns' and the CustomRun's statuses true to what the pod reports, until
// the run is done.
//
// Every step is idempotent: objects have deterministic names and are got or created,
// statuses are recomputed from what can be observed and written only when they differ
// from what is stored. A reconcile can stop at any point (crash, restart, conflict) and
// the next one picks up from what the API server holds.
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"

	apisconfig "github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	customrunreconciler "github.com/tektoncd/pipeline/pkg/client/injection/reconciler/pipeline/v1beta1/customrun"
	listersv1 "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	listersv1beta1 "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/reconciler/events"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/utils/clock"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"
	pkgreconciler "knative.dev/pkg/reconciler"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// Reconciler reconciles CustomRuns of kind PipelineInPod.
type Reconciler struct {
	KubeClient      kubernetes.Interface
	PipelineClient  versioned.Interface
	PodLister       corelisters.PodLister
	TaskRunLister   listersv1.TaskRunLister
	CustomRunLister listersv1beta1.CustomRunLister
	Preparer        Preparer
	Reports         ReportReader
	Clock           clock.PassiveClock
	Bounds          observe.Bounds
	// RequeueInterval is how often a running CustomRun is looked at again: the reporter's
	// log changes without any pod event.
	RequeueInterval time.Duration
}

var _ customrunreconciler.Interface = (*Reconciler)(nil)

// DefaultRequeueInterval is the default of RequeueInterval.
const DefaultRequeueInterval = 3 * time.Second

// ReconcileKind implements customrunreconciler.Interface. Status changes made here are
// written by the generated reconciler once this returns (and only if they differ).
func (r *Reconciler) ReconcileKind(ctx context.Context, cr *v1beta1.CustomRun) pkgreconciler.Event {
	if !v1alpha1.IsPipelineInPod(cr) {
		return nil
	}
	before := r.storedCondition(cr)
	defer func() {
		// Tekton's events: Started on the first condition, then one per change of the
		// Succeeded condition (Running..., Succeeded or Failed).
		events.Emit(ctx, before, cr.Status.GetCondition(apis.ConditionSucceeded), cr)
	}()
	if cr.IsDone() {
		return r.finish(ctx, cr)
	}
	now := r.now()
	if !cr.HasStarted() {
		cr.Status.InitializeConditions()
		cr.Status.StartTime = &now
	}
	var end *observe.Ending
	switch {
	case cr.IsCancelled():
		end = observe.Cancelled(cr.Name, string(cr.Spec.StatusMessage))
	case timedOut(cr, now):
		end = observe.TimedOut(cr.Name, timeoutOf(cr))
	}
	return r.reconcileAttempt(ctx, cr, end, now)
}

// storedCondition is the Succeeded condition as stored. The generated reconciler has
// already reset a copy (knative's PreProcessReconcile marks it Unknown when the
// generation moved, e.g. when Tekton sets spec.status to cancel), so the stored one is
// read from the informer; a final condition it reset is put back, since a finished run
// must stay finished whatever happens to its spec.
//
// The informer may have moved on since the generated reconciler read cr (typically: our
// own last status write arrived in between). cr's status is then older than the stored
// one, and this reconcile goes on from the stored status as a whole: a final condition
// put back onto an older status would be written (the generated reconciler retries a
// conflicting status write against the latest version) as a finished run without its
// completion time, results or final summary.
func (r *Reconciler) storedCondition(cr *v1beta1.CustomRun) *apis.Condition {
	if r.CustomRunLister == nil {
		return nil
	}
	stored, err := r.CustomRunLister.CustomRuns(cr.Namespace).Get(cr.Name)
	if err != nil {
		if !cr.HasStarted() {
			return nil
		}
		return cr.Status.GetCondition(apis.ConditionSucceeded).DeepCopy()
	}
	if stored.ResourceVersion != cr.ResourceVersion && stored.HasStarted() {
		cr.Status = *stored.Status.DeepCopy()
	}
	if !cr.HasStarted() {
		return nil
	}
	c := stored.Status.GetCondition(apis.ConditionSucceeded)
	if c != nil && !c.IsUnknown() {
		cr.Status.SetCondition(c.DeepCopy())
	}
	return c.DeepCopy()
}

// reconcileAttempt moves the current attempt on: creates its pod if it is missing,
// observes it, writes the child TaskRuns' statuses, and decides the CustomRun's.
func (r *Reconciler) reconcileAttempt(ctx context.Context, cr *v1beta1.CustomRun, end *observe.Ending, now metav1.Time) pkgreconciler.Event {
	logger := logging.FromContext(ctx)
	attempt := len(cr.Status.RetriesStatus)
	podName := assemble.PodName(cr.Name, attempt)
	summary := observe.DecodeSummary(cr.Status.ExtraFields)
	if summary.PodName != podName {
		summary.PodName = ""
	}
	if err := r.cleanupAttempts(ctx, cr, attempt); err != nil {
		return err
	}
	pod, err := r.getPod(ctx, cr.Namespace, podName)
	if err != nil {
		return err
	}
	children, err := r.childTaskRuns(cr)
	if err != nil {
		return err
	}

	var tasks []plan.Task
	var rec runRecord
	switch {
	case pod != nil:
		p, record, err := planOf(pod)
		if err != nil {
			r.fail(cr, ReasonValidationFailed, err.Error())
			return nil
		}
		tasks, rec = p.Tasks, record
		summary.PodName = podName
	case end == nil && summary.PodName == podName:
		// Recorded as created, now missing: deleted under us. Its plan went with it.
		in := observe.Input{Tasks: observe.TasksFromTaskRuns(children), PodName: podName, TaskRuns: byName(children)}
		end = observe.PodDeleted(podName, observe.StartedTasks(in))
		tasks = in.Tasks
	case end == nil:
		p, record, created, event := r.start(ctx, cr, podName, children)
		if event != nil {
			return event
		}
		if p == nil {
			return nil // failed for good; the status says why
		}
		pod, rec = p, record
		tasks = planTasks(pod)
		children = created
		summary.PodName = podName
	default:
		// Cancelled or timed out before the pod was created: end whatever TaskRuns exist.
		tasks = observe.TasksFromTaskRuns(children)
	}

	states, done, err := r.readReport(ctx, pod)
	if err != nil {
		if end == nil {
			logger.Warnw("Cannot read the reporter's log yet", "error", err)
			return controller.NewRequeueAfter(r.interval())
		}
		// Cancelling or timing out does not wait for the log: the stored statuses are
		// kept and whatever did not finish ends.
		states, done = nil, false
	}
	in := observe.Input{
		Tasks: tasks, PodName: podName, Pod: pod, Report: states, ReportDone: done,
		TaskRuns: byName(children), End: end, Now: now, Bounds: r.Bounds,
	}
	if pod == nil && summary.PodName == "" {
		in.PodName = ""
	}
	obs := observe.Observe(in)
	obs.SkippedBefore = len(rec.Skipped)
	if err := r.syncTaskRuns(ctx, in, obs); err != nil {
		return err
	}
	sum := obs.Summarize(rec.PipelineName, summary.PodName, rec.Skipped)
	if err := setSummary(cr, sum); err != nil {
		return err
	}

	if !obs.Over {
		if err := r.markReady(ctx, pod, tasks); err != nil {
			logger.Warnw("Cannot mark the pod ready", "pod", podName, "error", err)
		}
		cr.Status.MarkCustomRunRunning(string(v1beta1.CustomRunReasonRunning), "%s", obs.Count().RunningMessage())
		return controller.NewRequeueAfter(r.requeueAfter(cr, now))
	}

	verdict := obs.Verdict()
	results, err := observe.PipelineResults(rec.Results, obs.Tasks, rec.Skipped, rec.matrixed())
	if err != nil && verdict.Succeeded {
		verdict = observe.Verdict{Reason: observe.ReasonCouldntGetPipelineResult,
			Message: fmt.Sprintf("Failed to get PipelineResult from TaskRun Results for CustomRun %s: %s", cr.Name, err)}
	}
	cr.Status.Results = results
	if !verdict.Succeeded && !cr.IsCancelled() && attempt < cr.Spec.Retries {
		r.retry(cr, verdict, now)
		return controller.NewRequeueImmediately()
	}
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

// retry archives the failed attempt in status.retriesStatus, as Tekton does for a TaskRun,
// and starts the next one: a new pod (pod-retry<N>), the same child TaskRuns.
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

// finish keeps a finished CustomRun's world consistent: stops pods that must not keep
// running, and brings back any child TaskRun whose final status was lost.
func (r *Reconciler) finish(ctx context.Context, cr *v1beta1.CustomRun) pkgreconciler.Event {
	attempt := len(cr.Status.RetriesStatus)
	if err := r.cleanupAttempts(ctx, cr, attempt+1); err != nil {
		return err
	}
	children, err := r.childTaskRuns(cr)
	if err != nil {
		return err
	}
	allFinal := true
	for _, tr := range children {
		if !tr.IsDone() {
			allFinal = false
		}
	}
	if allFinal {
		return nil
	}
	podName := assemble.PodName(cr.Name, attempt)
	pod, err := r.getPod(ctx, cr.Namespace, podName)
	if err != nil {
		return err
	}
	tasks := observe.TasksFromTaskRuns(children)
	var states map[string]plan.TaskState
	var done bool
	if pod != nil {
		if p, _, err := planOf(pod); err == nil {
			tasks = p.Tasks
		}
		if states, done, err = r.readReport(ctx, pod); err != nil {
			states, done = nil, false
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
	summary := observe.DecodeSummary(cr.Status.ExtraFields)
	in := observe.Input{
		Tasks: tasks, PodName: podName, Pod: pod, Report: states, ReportDone: done,
		TaskRuns: byName(children), End: end, Now: at, Bounds: r.Bounds,
		Settled: summary.Settled(),
	}
	if pod == nil && summary.PodName != podName {
		// The attempt never got its pod (it failed or was cancelled first): name none.
		in.PodName = ""
	}
	return r.syncTaskRuns(ctx, in, observe.Observe(in))
}

// fail ends the run as failed, now.
func (r *Reconciler) fail(cr *v1beta1.CustomRun, reason, message string) {
	cr.Status.MarkCustomRunFailed(reason, "%s", message)
	now := r.now()
	cr.Status.CompletionTime = &now
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

func (r *Reconciler) requeueAfter(cr *v1beta1.CustomRun, now metav1.Time) time.Duration {
	d := r.interval()
	if t := timeoutOf(cr); t != apisconfig.NoTimeoutDuration && cr.Status.StartTime != nil {
		if left := cr.Status.StartTime.Add(t).Sub(now.Time) + time.Second; left > 0 && left < d {
			d = left
		}
	}
	return d
}

// timeoutOf is the timeout of one attempt: spec.timeout (which Tekton sets from the
// pipeline task), else the inline spec's timeouts.pipeline, else Tekton's default.
// Zero means none.
func timeoutOf(cr *v1beta1.CustomRun) time.Duration {
	if cr.Spec.Timeout != nil {
		return cr.Spec.Timeout.Duration
	}
	if s, err := v1alpha1.SpecOf(cr); err == nil && s.Timeouts != nil && s.Timeouts.Pipeline != nil {
		return s.Timeouts.Pipeline.Duration
	}
	return apisconfig.DefaultTimeoutMinutes * time.Minute
}

func timedOut(cr *v1beta1.CustomRun, now metav1.Time) bool {
	t := timeoutOf(cr)
	if t == apisconfig.NoTimeoutDuration || cr.Status.StartTime == nil {
		return false
	}
	return now.Sub(cr.Status.StartTime.Time) >= t
}

func setSummary(cr *v1beta1.CustomRun, s observe.Summary) error {
	raw, err := s.Encode()
	if err != nil {
		return err
	}
	cr.Status.ExtraFields = raw
	return nil
}

func planTasks(pod *corev1.Pod) []plan.Task {
	p, _, err := planOf(pod)
	if err != nil {
		return nil
	}
	return p.Tasks
}

func byName(trs []*v1.TaskRun) map[string]*v1.TaskRun {
	m := map[string]*v1.TaskRun{}
	for _, tr := range trs {
		m[tr.Name] = tr
	}
	return m
}

// readReport reads the reporter's log once it has one. A pod that is still running and
// whose log cannot be read is looked at again later rather than observed without its
// report (which would look like tasks that never ran); a pod that has ended is observed
// with whatever can be read.
func (r *Reconciler) readReport(ctx context.Context, pod *corev1.Pod) (map[string]plan.TaskState, bool, error) {
	if pod == nil || !reporterStarted(pod) || r.Reports == nil {
		return nil, false, nil
	}
	states, done, err := r.Reports.Read(ctx, pod)
	if err != nil {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return nil, false, nil
		}
		return nil, false, err
	}
	return states, done, nil
}

// isPermanent unwraps a Preparer error.
func isPermanent(err error) (*PermanentError, bool) {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return pe, true
	}
	return nil, false
}
