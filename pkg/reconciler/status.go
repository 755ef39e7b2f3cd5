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
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
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
// are kept and our final status still wins.
func (r *Reconciler) syncTaskRuns(ctx context.Context, in observe.Input, obs *observe.Observation) error {
	var mu sync.Mutex
	var errs []error
	var g errgroup.Group
	g.SetLimit(maxConcurrentWrites)
	for _, out := range obs.Tasks {
		tr := in.TaskRuns[out.Task.TaskRun]
		if !out.Write || tr == nil || equality.Semantic.DeepEqual(tr.Status, out.Status) {
			continue
		}
		g.Go(func() error {
			if err := r.writeTaskRunStatus(ctx, in, tr, out.Status); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("updating the status of TaskRun %q: %w", tr.Name, err))
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// writeTaskRunStatus writes one child TaskRun's status, retrying on conflicts.
func (r *Reconciler) writeTaskRunStatus(ctx context.Context, in observe.Input, tr *v1.TaskRun, desired v1.TaskRunStatus) error {
	run := types.NamespacedName{Namespace: tr.Namespace, Name: tr.Labels[pipeline.CustomRunKey]}
	cur := tr
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		next := cur.DeepCopy()
		next.Status = desired
		updated, err := r.PipelineClient.TektonV1().TaskRuns(cur.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if err == nil {
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
		again := in
		again.TaskRuns = maps.Clone(in.TaskRuns)
		again.TaskRuns[fresh.Name] = fresh
		for _, o := range observe.Observe(again).Tasks {
			if o.Task.TaskRun == fresh.Name {
				desired = o.Status
			}
		}
		if equality.Semantic.DeepEqual(fresh.Status, desired) {
			return nil
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		r.written.gone(run, tr.Name)
		return nil
	}
	return err
}
