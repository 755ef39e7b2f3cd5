// Package reconciler is the CustomRun reconciler of PipelineInPod: for every CustomRun of
// kind PipelineInPod it creates the child TaskRuns and the one pod of each run attempt
// (a CustomRun retry is a new pod; a task's own retries happen inside the pod), and keeps
// the TaskRuns' and the CustomRun's statuses true to what the pod reports, until the run
// is done.
//
// Every step is idempotent: objects have deterministic names and are got or created,
// statuses are recomputed from what can be observed and written only when they differ
// from what is stored. A reconcile can stop at any point (crash, restart, conflict) and
// the next one picks up from what the API server holds.
//
// Files by concern: reconciler.go the flow of one reconcile; lifecycle.go how a run and
// its attempts end (cancel, timeout, retry, verdict, finished runs); create.go what an
// attempt creates (TaskRuns, PVCs, pod); status.go the statuses written (CustomRun as
// stored, child TaskRuns, summary); written.go the TaskRuns written that the informer
// has not delivered yet; pod.go the pod (finding it, its plan and run record, its
// report, readiness, deleting it); follow.go following the reporter's log;
// controller.go the wiring.
package reconciler

import (
	"context"
	"time"

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
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
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
	// RequeueInterval is how often a running CustomRun is looked at again: Followers
	// enqueue it as the reporter's log changes; this is the fallback.
	RequeueInterval time.Duration
	// Tekton is the cluster's Tekton release; nil: unknown.
	Tekton *TektonVersion

	written writtenTaskRuns
}

var _ customrunreconciler.Interface = (*Reconciler)(nil)

// Preparer turns a CustomRun into what a run attempt creates. The controller's is
// pkg/prepare's Stages (resolve, compile, assemble); the interface lets the reconciler's
// transitions be tested with fixed outputs. Its errors are classified as pkg/prepare
// documents.
type Preparer interface {
	Prepare(ctx context.Context, cr *v1beta1.CustomRun) (*prepare.Prepared, error)
}

var _ Preparer = (*prepare.Stages)(nil)

// ReportReader reads the task states the reporter container has streamed so far.
type ReportReader interface {
	Read(ctx context.Context, pod *corev1.Pod) (states map[string]plan.TaskState, done bool, err error)
}

// DefaultRequeueInterval is the default of RequeueInterval.
const DefaultRequeueInterval = 3 * time.Second

// ReconcileKind implements customrunreconciler.Interface. Status changes made here are
// written by the generated reconciler once this returns (and only if they differ).
func (r *Reconciler) ReconcileKind(ctx context.Context, cr *v1beta1.CustomRun) pkgreconciler.Event {
	if !v1alpha1.IsPipelineInPod(cr) {
		return nil
	}
	stored := r.storedCustomRun(cr)
	keepStoredStatus(cr, stored)
	before := conditionBefore(cr, stored)
	defer func() {
		// Tekton's events: Started on the first condition, then one per change of the
		// Succeeded condition (Running..., Succeeded or Failed).
		events.Emit(ctx, before, cr.Status.GetCondition(apis.ConditionSucceeded), cr)
	}()
	if cr.IsDone() {
		return r.finish(ctx, cr)
	}
	if r.Tekton.HonoursManagedBy() {
		ctx = compile.WithManagedByHonoured(ctx)
	}
	now := r.now()
	if !cr.HasStarted() {
		cr.Status.InitializeConditions()
		cr.Status.StartTime = &now
	}
	return r.reconcileRunAttempt(ctx, cr, ending(ctx, cr, now), now)
}

// runAttempt is the current run attempt as one reconcile finds it.
type runAttempt struct {
	number  int // len(status.retriesStatus): 0 for the first
	podName string
	// pod is nil when it was not created yet or is gone; podCreated tells the two apart
	// (the CustomRun's summary records the pod once created).
	pod        *corev1.Pod
	podCreated bool
	// tasks are the pod's plan's, or one per child TaskRun when there is no pod.
	tasks    []plan.Task
	record   runRecord
	taskRuns []*v1.TaskRun
	// digests are those of the pod's annotations as created (digest.go).
	digests map[string]string
	// recorded is the CustomRun's summary as stored when the reconcile began (this
	// reconcile writes its own at the end, setSummary).
	recorded observe.Summary
}

func newRunAttempt(cr *v1beta1.CustomRun) *runAttempt {
	n := len(cr.Status.RetriesStatus)
	a := &runAttempt{number: n, podName: plan.PodName(cr.Name, n), recorded: observe.DecodeSummary(cr.Status.ExtraFields)}
	a.podCreated = a.recorded.PodName == a.podName
	if a.podCreated {
		a.digests = a.recorded.PodDigests
	}
	return a
}

// input is what observing the attempt takes.
func (a *runAttempt) input(report map[string]plan.TaskState, reportDone bool, end *observe.Ending, now metav1.Time, bounds observe.Bounds) observe.Input {
	in := observe.Input{
		Tasks: a.tasks, PodName: a.podName, Pod: a.pod, Report: report, ReportDone: reportDone,
		TaskRuns: byName(a.taskRuns), End: end, Now: now, Bounds: bounds,
	}
	if a.pod == nil && !a.podCreated {
		// The attempt never got its pod (it failed or was cancelled first): name none.
		in.PodName = ""
	}
	return in
}

// createdPod is the pod the CustomRun's summary names.
func (a *runAttempt) createdPod() string {
	if a.podCreated {
		return a.podName
	}
	return ""
}

// reconcileRunAttempt moves the current run attempt on: creates its pod if it is
// missing, observes it, writes the child TaskRuns' statuses, and decides the CustomRun's.
func (r *Reconciler) reconcileRunAttempt(ctx context.Context, cr *v1beta1.CustomRun, end *observe.Ending, now metav1.Time) pkgreconciler.Event {
	a := newRunAttempt(cr)
	if err := r.deleteEndedPods(ctx, cr, a.number); err != nil {
		return err
	}
	end, err := r.findOrStart(ctx, cr, a, end)
	if err != nil {
		return r.stopFor(cr, err)
	}
	// The summary as stored records which tasks were skipped; their never-run TaskRuns go
	// (status.go: skipped pipeline tasks).
	if a.taskRuns, err = r.deleteSkippedTaskRuns(ctx, a.recorded, a.taskRuns); err != nil {
		return err
	}
	var settled map[string]observe.TaskSummary
	if a.pod == nil {
		a.tasks, settled = withDeletedSkipped(a.tasks, a.recorded, a.taskRuns)
	}
	report, done, err := r.readReport(ctx, a.pod)
	if err != nil && end == nil && !observe.PodLost(a.pod) {
		// The pod looks alive: its log is waited for, up to LogReadTimeout (lost.go). A
		// pod that is lost is observed without it, at once.
		lost, after := r.logUnreadable(cr, a, err, now)
		if lost == nil {
			logging.FromContext(ctx).Warnw("Cannot read the reporter's log yet", "error", err)
			return controller.NewRequeueAfter(after)
		}
		end = lost
	}
	// Cancelling or timing out does not wait for the log: the stored statuses are kept
	// and whatever did not finish ends.
	in := a.input(report, done, end, now, r.Bounds)
	in.Settled = settled
	obs, syncErr := r.observeAndSync(ctx, a, in)
	obs.SkippedBefore = len(a.record.Skipped)
	if syncErr != nil && !(obs.Over && obs.End != nil && (end != nil || obs.End.Reason == observe.ReasonTaskRunStatusRefused)) {
		return syncErr
	}
	// An attempt that is cancelled, timed out, lost its pod or had a status refused ends
	// even if some TaskRun could not be written: finish writes it once the CustomRun is
	// done, and the error requeues the run until it has.
	if err := setSummary(cr, a.withDigests(obs.Summarize(a.record.PipelineName, a.createdPod(), a.record.Skipped))); err != nil {
		return err
	}
	if !obs.Over {
		if err := r.markReady(ctx, a.pod, a.tasks); err != nil {
			logging.FromContext(ctx).Warnw("Cannot mark the pod ready", "pod", a.podName, "error", err)
		}
		cr.Status.MarkCustomRunRunning(string(v1beta1.CustomRunReasonRunning), "%s", obs.Count().RunningMessage())
		return controller.NewRequeueAfter(r.requeueAfter(ctx, cr, now))
	}
	if ev := r.conclude(cr, a, obs, now); syncErr == nil {
		return ev
	}
	return syncErr
}

// observeAndSync observes the attempt and writes its TaskRuns' statuses. A status the
// API server refuses for good (refused.go), now or in an earlier reconcile of this
// attempt, ends the attempt, unless something else already does: then the ending's
// message names it. Only errors worth retrying are returned.
func (r *Reconciler) observeAndSync(ctx context.Context, a *runAttempt, in observe.Input) (*observe.Observation, error) {
	refused := storedRefusals(a.taskRuns, in.PodName)
	if in.End == nil {
		in.End = refusalEnding(a.tasks, refused, in.PodName)
	}
	obs := observe.Observe(in)
	keepRefused(obs, refused)
	refs, err := r.syncTaskRuns(ctx, in, obs)
	if len(refs) == 0 {
		return obs, err
	}
	for _, ref := range refs {
		refused[ref.taskRun] = ref
	}
	if obs.End != nil {
		keepRefused(obs, refused)
		obs.End.Message += refusedNote(refs)
		return obs, err
	}
	// The other tasks end now: observed again with the ending, and written.
	in.End = refusalEnding(a.tasks, refused, in.PodName)
	obs = observe.Observe(in)
	keepRefused(obs, refused)
	more, err := r.syncTaskRuns(ctx, in, obs)
	for _, ref := range more {
		refused[ref.taskRun] = ref
	}
	keepRefused(obs, refused)
	return obs, err
}

// findOrStart fills a with the attempt's child TaskRuns and pod, creating them when the
// attempt has not started, and returns how the attempt ends early, if it does: end, or
// the pod's deletion.
func (r *Reconciler) findOrStart(ctx context.Context, cr *v1beta1.CustomRun, a *runAttempt, end *observe.Ending) (*observe.Ending, error) {
	var err error
	if a.pod, err = r.getPod(ctx, cr.Namespace, a.podName); err != nil {
		return end, err
	}
	if a.taskRuns, err = r.childTaskRuns(cr); err != nil {
		return end, err
	}
	switch {
	case a.pod != nil:
		a.podCreated = true
		if err := a.readPlan(); err != nil || end != nil {
			return end, err
		}
		return end, r.ensureTaskRuns(ctx, cr, a)
	case end == nil && a.podCreated:
		// Recorded as created, now missing: deleted under us. Its plan went with it.
		a.tasks = observe.TasksFromTaskRuns(a.taskRuns)
		started := observe.StartedTasks(observe.Input{Tasks: a.tasks, PodName: a.podName, TaskRuns: byName(a.taskRuns)})
		return observe.PodDeleted(a.podName, started), nil
	case end == nil:
		return nil, r.start(ctx, cr, a)
	default:
		// Cancelled or timed out before the pod was created: end whatever TaskRuns exist.
		a.tasks = observe.TasksFromTaskRuns(a.taskRuns)
		return end, nil
	}
}
