package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/reconciler/events"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/logging"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// storedCustomRun is the CustomRun as the informer holds it, nil when it holds none. The
// generated reconciler hands ReconcileKind a copy it may already have changed (knative's
// PreProcessReconcile marks the Succeeded condition Unknown when the generation moved,
// e.g. when Tekton sets spec.status to cancel), and the informer may have moved on since
// it read cr (typically: our own last status write arrived in between).
func (r *Reconciler) storedCustomRun(cr *v1beta1.CustomRun) *v1beta1.CustomRun {
	stored, err := r.CustomRunLister.CustomRuns(cr.Namespace).Get(cr.Name)
	if err != nil {
		return nil
	}
	return stored
}

// keepStoredStatus puts back onto cr what the stored CustomRun says and cr lost. When the
// stored status is newer, this reconcile goes on from it as a whole: a final condition put
// back onto an older status would be written (the generated reconciler retries a
// conflicting status write against the latest version) as a finished run without its
// completion time, results or final summary. A final condition that was reset is put
// back, since a finished run must stay finished whatever happens to its spec.
func keepStoredStatus(cr, stored *v1beta1.CustomRun) {
	if stored == nil {
		return
	}
	if stored.ResourceVersion != cr.ResourceVersion && stored.HasStarted() {
		cr.Status = *stored.Status.DeepCopy()
	}
	if !cr.HasStarted() {
		return
	}
	if c := stored.Status.GetCondition(apis.ConditionSucceeded); c != nil && !c.IsUnknown() {
		cr.Status.SetCondition(c.DeepCopy())
	}
}

// conditionBefore is the Succeeded condition as stored before this reconcile: what the
// events of this reconcile compare against.
func conditionBefore(cr, stored *v1beta1.CustomRun) *apis.Condition {
	if !cr.HasStarted() {
		return nil
	}
	if stored == nil {
		return cr.Status.GetCondition(apis.ConditionSucceeded).DeepCopy()
	}
	return stored.Status.GetCondition(apis.ConditionSucceeded).DeepCopy()
}

func setSummary(cr *v1beta1.CustomRun, s observe.Summary) error {
	raw, err := s.Encode()
	if err != nil {
		return err
	}
	cr.Status.ExtraFields = raw
	return nil
}

// childTaskRuns lists the CustomRun's TaskRuns: the informer's, or what this controller
// wrote last where the informer has not caught up yet (see writtenTaskRuns).
func (r *Reconciler) childTaskRuns(cr *v1beta1.CustomRun) ([]*v1.TaskRun, error) {
	trs, err := r.TaskRunLister.TaskRuns(cr.Namespace).List(labels.SelectorFromSet(labels.Set{pipeline.CustomRunKey: cr.Name}))
	if err != nil {
		return nil, err
	}
	var out []*v1.TaskRun
	for _, tr := range trs {
		if metav1.IsControlledBy(tr, cr) {
			out = append(out, tr)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return r.written.fresh(cr, out), nil
}

func byName(trs []*v1.TaskRun) map[string]*v1.TaskRun {
	m := map[string]*v1.TaskRun{}
	for _, tr := range trs {
		m[tr.Name] = tr
	}
	return m
}

// syncTaskRuns writes every child TaskRun status that differs from the computed one,
// concurrently (maxConcurrentWrites at a time). A conflict means someone else wrote
// meanwhile: the status is recomputed against what they wrote, so their newer fields
// are kept and our final status still wins. A status the API server refuses for good
// gets a stand-in failure instead (see refused.go) and is returned among the refusals,
// not the errors: retrying it would block the run forever. Each write emits the events
// Tekton emits for its own TaskRuns. A skipped task's TaskRun that never ran is left as
// it is, to be deleted (see deleteSkippedTaskRuns).
func (r *Reconciler) syncTaskRuns(ctx context.Context, in observe.Input, obs *observe.Observation) ([]refusal, error) {
	var mu sync.Mutex
	var errs []error
	var refusals []refusal
	var g errgroup.Group
	g.SetLimit(maxConcurrentWrites)
	for _, out := range obs.Tasks {
		tr := in.TaskRuns[out.Task.TaskRun]
		if !out.Write || tr == nil || equality.Semantic.DeepEqual(tr.Status, out.Status) || skippedNeverRan(out.State, tr) {
			continue
		}
		g.Go(func() error {
			ref, err := r.writeTaskRunStatus(ctx, in, tr, out.Status)
			mu.Lock()
			defer mu.Unlock()
			if ref != nil {
				refusals = append(refusals, *ref)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("updating the status of TaskRun %q: %w", tr.Name, err))
			}
			return nil
		})
	}
	_ = g.Wait()
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	sort.Slice(refusals, func(i, j int) bool { return refusals[i].taskRun < refusals[j].taskRun })
	return refusals, errors.Join(errs...)
}

// writeTaskRunStatus writes one child TaskRun's status, retrying on conflicts. When the
// API server refuses it for good, the stand-ins for it are written instead, and the
// refusal is returned.
func (r *Reconciler) writeTaskRunStatus(ctx context.Context, in observe.Input, tr *v1.TaskRun, desired v1.TaskRunStatus) (*refusal, error) {
	run := types.NamespacedName{Namespace: tr.Namespace, Name: tr.Labels[pipeline.CustomRunKey]}
	cur, err := r.putTaskRunStatus(ctx, run, tr, desired, func(fresh *v1.TaskRun) v1.TaskRunStatus {
		again := in
		again.TaskRuns = maps.Clone(in.TaskRuns)
		again.TaskRuns[fresh.Name] = fresh
		for _, o := range observe.Observe(again).Tasks {
			if o.Task.TaskRun == fresh.Name {
				return o.Status
			}
		}
		return desired
	})
	if err == nil || !permanentlyRefused(err) {
		return nil, r.gone(run, tr, err)
	}
	ref := &refusal{taskRun: tr.Name, message: observe.RefusedMessage(refusalCause(err))}
	logging.FromContext(ctx).Warnw("The API server refused a TaskRun's status for good; writing a failure in its place", "taskRun", tr.Name, "error", err)
	for _, standIn := range standIns(desired, in.PodName, ref.message, in.Now) {
		ref.status = standIn
		if equality.Semantic.DeepEqual(cur.Status, standIn) {
			ref.stored = true
			return ref, nil
		}
		// The stand-in is fixed: a conflict writes it again over the newer version.
		next, err := r.putTaskRunStatus(ctx, run, cur, standIn, nil)
		switch {
		case err == nil:
			ref.stored = true
			return ref, nil
		case !permanentlyRefused(err):
			return ref, r.gone(run, tr, err)
		}
		cur = next
	}
	return ref, nil
}

// gone forgets a TaskRun that a write found deleted, which is no error; other errors are
// returned.
func (r *Reconciler) gone(run types.NamespacedName, tr *v1.TaskRun, err error) error {
	if apierrors.IsNotFound(err) {
		r.written.gone(run, tr.Name)
		return nil
	}
	return err
}

// putTaskRunStatus writes desired as tr's status, retrying on conflicts against the
// fresh version, with the status recompute gives for it (nil: desired as it is). It
// returns the latest version it knows of, written or not.
func (r *Reconciler) putTaskRunStatus(ctx context.Context, run types.NamespacedName, tr *v1.TaskRun, desired v1.TaskRunStatus, recompute func(*v1.TaskRun) v1.TaskRunStatus) (*v1.TaskRun, error) {
	cur := tr
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := r.releasePending(ctx, run, &cur, desired); err != nil {
			return err
		}
		next := cur.DeepCopy()
		next.Status = desired
		updated, err := r.PipelineClient.TektonV1().TaskRuns(cur.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if err == nil {
			emitTaskRunEvents(ctx, cur.Status, updated)
			r.written.wrote(run, cur.ResourceVersion, updated)
			cur = updated
			return nil
		}
		if !apierrors.IsConflict(err) {
			return err
		}
		fresh, gerr := r.PipelineClient.TektonV1().TaskRuns(cur.Namespace).Get(ctx, cur.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		cur = fresh
		if recompute != nil {
			desired = recompute(fresh)
		}
		if equality.Semantic.DeepEqual(fresh.Status, desired) {
			return nil
		}
		return err
	})
	return cur, err
}

// releasePending clears spec.status of a child that is about to be given a start time.
// Children are created TaskRunPending so that nothing else starts them, and Tekton's
// validation (v1 TaskRun.Validate, which its admission webhook runs on every update,
// the status subresource's included) refuses a Pending TaskRun that has started. Only
// spec.status changes, which Tekton's ValidateUpdate allows before a TaskRun is done;
// spec.managedBy still keeps Tekton's own TaskRun reconciler away from the child.
// The spec write is remembered with the run's other writes (r.written).
func (r *Reconciler) releasePending(ctx context.Context, run types.NamespacedName, cur **v1.TaskRun, desired v1.TaskRunStatus) error {
	if !(*cur).IsPending() || desired.StartTime == nil {
		return nil
	}
	next := (*cur).DeepCopy()
	next.Spec.Status = ""
	next.Spec.StatusMessage = ""
	updated, err := r.PipelineClient.TektonV1().TaskRuns(next.Namespace).Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	r.written.wrote(run, (*cur).ResourceVersion, updated)
	*cur = updated
	return nil
}

// emitTaskRunEvents emits, for one status write, the Kubernetes events Tekton's TaskRun
// reconciler emits for its own TaskRuns (pkg/reconciler/events): Started when the
// TaskRun starts, then one per change of its Succeeded condition (Succeeded, Failed, a
// running reason). A pending TaskRun, which Tekton does not start, gets none.
func emitTaskRunEvents(ctx context.Context, before v1.TaskRunStatus, after *v1.TaskRun) {
	// The recorder names the object by its kind, which a typed client's answer leaves out.
	obj := after.DeepCopy()
	obj.SetGroupVersionKind(obj.GetGroupVersionKind())
	b, a := before.GetCondition(apis.ConditionSucceeded), after.Status.GetCondition(apis.ConditionSucceeded)
	if before.StartTime == nil && after.Status.StartTime != nil {
		events.Emit(ctx, nil, &apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionUnknown}, obj)
		if a != nil && a.IsUnknown() {
			return
		}
	}
	if b == nil && a != nil && a.IsUnknown() {
		return
	}
	events.Emit(ctx, b, a, obj)
}

// Skipped pipeline tasks. Tekton creates no TaskRun for a skipped task: it lists it in
// the PipelineRun's status.skippedTasks, and tkn and the Dashboard show every TaskRun
// whose condition is False as failed, whatever its reason. Our child TaskRuns exist from
// the start, so a task skipped in the pod has a pending TaskRun that never ran: it gets
// no status, and is deleted once the CustomRun's stored summary records the task as
// skipped (so the record, which says why, outlives it). A TaskRun that ran in an
// earlier attempt of the CustomRun keeps that history in retriesStatus and is kept,
// ending False with reason TaskRunSkipped.

// skippedNeverRan tells a skipped task's TaskRun that never ran, in this attempt or an
// earlier one.
func skippedNeverRan(state plan.Phase, tr *v1.TaskRun) bool {
	return state == plan.PhaseSkipped && tr.Status.StartTime == nil && len(tr.Status.RetriesStatus) == 0
}

// deleteSkippedTaskRuns deletes the never-run TaskRuns of the tasks that recorded, the
// CustomRun's summary as stored, says were skipped, and returns the TaskRuns that remain.
func (r *Reconciler) deleteSkippedTaskRuns(ctx context.Context, recorded observe.Summary, trs []*v1.TaskRun) ([]*v1.TaskRun, error) {
	var kept []*v1.TaskRun
	for _, tr := range trs {
		ts, ok := recorded.Task(tr.Name)
		if !ok || !skippedNeverRan(ts.State, tr) {
			kept = append(kept, tr)
			continue
		}
		uid := tr.UID
		err := r.PipelineClient.TektonV1().TaskRuns(tr.Namespace).Delete(ctx, tr.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("deleting TaskRun %q of skipped task %q: %w", tr.Name, ts.PipelineTaskName, err)
		}
	}
	return kept, nil
}

// withDeletedSkipped completes an attempt's tasks when they come from its TaskRuns (the
// pod and its plan are gone): a skipped task whose TaskRun was deleted (trs holds those that
// remain) is added if missing, and settled holds its recorded state, which stands in for
// the report that can no longer be read.
func withDeletedSkipped(tasks []plan.Task, recorded observe.Summary, trs []*v1.TaskRun) ([]plan.Task, map[string]observe.TaskSummary) {
	exists, listed := map[string]bool{}, map[string]bool{}
	for _, tr := range trs {
		exists[tr.Name] = true
	}
	for _, t := range tasks {
		listed[t.TaskRun] = true
	}
	var settled map[string]observe.TaskSummary
	for _, ts := range recorded.TaskRuns {
		if ts.State != plan.PhaseSkipped || exists[ts.Name] {
			continue
		}
		if !listed[ts.Name] {
			tasks = append(tasks, plan.Task{Key: ts.Name, PipelineTask: ts.PipelineTaskName, TaskRun: ts.Name, Finally: ts.MemberOf == v1.PipelineFinallyTasks})
		}
		if settled == nil {
			settled = map[string]observe.TaskSummary{}
		}
		settled[ts.Name] = ts
	}
	return tasks, settled
}
