package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	podconvert "github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/kmeta"
	"knative.dev/pkg/logging"
	pkgreconciler "knative.dev/pkg/reconciler"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// readyAnnotation is Tekton's: the first step of a task with sidecars waits for the
// downward-API file it projects (/tekton/downward/ready).
const (
	readyAnnotation      = "tekton.dev/ready"
	readyAnnotationValue = "READY"
)

// start prepares the attempt and creates what it needs, in the order the pod needs them:
// child TaskRuns (their UIDs go into the pod), PVCs, then the pod. Every create tolerates
// AlreadyExists, so a restart at any point resumes without making anything twice.
// It returns (nil, ..., nil) when the run failed for good (the status says why).
func (r *Reconciler) start(ctx context.Context, cr *v1beta1.CustomRun, podName string, existing []*v1.TaskRun) (*corev1.Pod, runRecord, []*v1.TaskRun, pkgreconciler.Event) {
	var rec runRecord
	prep, err := r.Preparer.Prepare(ctx, cr)
	if err != nil {
		return nil, rec, nil, r.prepareFailed(cr, err)
	}
	rec = runRecord{PipelineName: prep.PipelineName, Results: prep.Results, Skipped: prep.Skipped, Matrixed: prep.Matrixed}
	children := byName(existing)
	uids := map[string]types.UID{}
	for _, tr := range prep.TaskRuns {
		got, err := r.getOrCreateTaskRun(ctx, cr, tr)
		if err != nil {
			return nil, rec, nil, r.prepareFailed(cr, err)
		}
		uids[got.Name] = got.UID
		children[got.Name] = got
	}
	built, err := prep.Build(ctx, uids)
	if err != nil {
		return nil, rec, nil, r.prepareFailed(cr, err)
	}
	if built.Pod == nil || built.Pod.Name != podName {
		return nil, rec, nil, fmt.Errorf("internal error: the build made pod %q for attempt %d, expected %q",
			podNameOf(built.Pod), len(cr.Status.RetriesStatus), podName)
	}
	for _, pvc := range built.PVCs {
		if _, err := r.KubeClient.CoreV1().PersistentVolumeClaims(cr.Namespace).Create(ctx, pvc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, rec, nil, fmt.Errorf("creating PersistentVolumeClaim %q: %w", pvc.Name, err)
		}
	}
	pod := built.Pod.DeepCopy()
	encoded, err := rec.encode()
	if err != nil {
		return nil, rec, nil, err
	}
	ensureMeta(&pod.ObjectMeta, cr)
	pod.Annotations[AnnotationRun] = encoded
	created, err := r.KubeClient.CoreV1().Pods(cr.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = r.KubeClient.CoreV1().Pods(cr.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && !metav1.IsControlledBy(created, cr) {
			err = &PermanentError{Reason: ReasonValidationFailed, Err: fmt.Errorf("pod %q already exists and does not belong to CustomRun %q", pod.Name, cr.Name)}
		}
	}
	if err != nil {
		return nil, rec, nil, r.prepareFailed(cr, refused(fmt.Sprintf("creating pod %q", pod.Name), err))
	}
	var out []*v1.TaskRun
	for _, tr := range children {
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return created, rec, out, nil
}

// prepareFailed turns a preparation error into the CustomRun's status or a requeue.
func (r *Reconciler) prepareFailed(cr *v1beta1.CustomRun, err error) pkgreconciler.Event {
	if errors.Is(err, ErrInProgress) {
		cr.Status.MarkCustomRunRunning(ReasonResolving, "%v", err)
		return controller.NewRequeueAfter(r.interval())
	}
	if pe, ok := isPermanent(err); ok {
		r.fail(cr, pe.Reason, pe.Error())
		return nil
	}
	return err
}

func podNameOf(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	return p.Name
}

// ensureMeta makes sure the controller can find what it creates: the label its informers
// select on, the CustomRun label, and the controller reference its handlers follow.
func ensureMeta(m *metav1.ObjectMeta, cr *v1beta1.CustomRun) {
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Labels[v1.ManagedByLabelKey] = v1alpha1.ManagedBy
	m.Labels[pipeline.CustomRunKey] = cr.Name
	if metav1.GetControllerOf(m) == nil {
		m.OwnerReferences = append(m.OwnerReferences, *kmeta.NewControllerRef(cr))
	}
	m.Namespace = cr.Namespace
}

// getOrCreateTaskRun creates a child TaskRun, or returns the one a former reconcile made.
func (r *Reconciler) getOrCreateTaskRun(ctx context.Context, cr *v1beta1.CustomRun, want *v1.TaskRun) (*v1.TaskRun, error) {
	if tr, err := r.TaskRunLister.TaskRuns(cr.Namespace).Get(want.Name); err == nil {
		return r.owned(cr, tr)
	}
	tr := want.DeepCopy()
	ensureMeta(&tr.ObjectMeta, cr)
	if tr.Spec.ManagedBy == nil {
		// Keeps Tekton's TaskRun controller away from it: see observe.TaskRunManagedBy.
		m := observe.TaskRunManagedBy
		tr.Spec.ManagedBy = &m
	}
	created, err := r.PipelineClient.TektonV1().TaskRuns(cr.Namespace).Create(ctx, tr, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		if created, err = r.PipelineClient.TektonV1().TaskRuns(cr.Namespace).Get(ctx, tr.Name, metav1.GetOptions{}); err == nil {
			return r.owned(cr, created)
		}
	}
	if err != nil {
		return nil, refused(fmt.Sprintf("creating TaskRun %q", tr.Name), err)
	}
	return created, nil
}

// refused tells an object the API server will never accept (invalid, too large: hazard
// 7) from a failure worth retrying (unreachable, quota, conflict).
func refused(what string, err error) error {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return err
	}
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err) {
		return &PermanentError{Reason: ReasonValidationFailed, Err: fmt.Errorf("%s: %w", what, err)}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (r *Reconciler) owned(cr *v1beta1.CustomRun, tr *v1.TaskRun) (*v1.TaskRun, error) {
	if !metav1.IsControlledBy(tr, cr) {
		return nil, &PermanentError{Reason: ReasonValidationFailed, Err: fmt.Errorf("TaskRun %q already exists and does not belong to CustomRun %q", tr.Name, cr.Name)}
	}
	return tr, nil
}

// childTaskRuns lists the CustomRun's TaskRuns.
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
	return out, nil
}

// getPod reads a pod from the informer, and from the API server when the informer does
// not have it: a pod created a moment ago may not be in the cache yet, and taking it for
// deleted would end the run.
func (r *Reconciler) getPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	if p, err := r.PodLister.Pods(ns).Get(name); err == nil {
		return p, nil
	}
	p, err := r.KubeClient.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return p, err
}

// syncTaskRuns writes every child TaskRun status that differs from the computed one. A
// conflict means someone else wrote meanwhile: the status is recomputed against what
// they wrote, so their newer fields are kept and our final status still wins.
func (r *Reconciler) syncTaskRuns(ctx context.Context, in observe.Input, obs *observe.Observation) error {
	var errs []error
	for _, out := range obs.Tasks {
		tr := in.TaskRuns[out.Task.TaskRun]
		if !out.Write || tr == nil || equality.Semantic.DeepEqual(tr.Status, out.Status) {
			continue
		}
		desired, cur := out.Status, tr
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			next := cur.DeepCopy()
			next.Status = desired
			updated, err := r.PipelineClient.TektonV1().TaskRuns(cur.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
			if err == nil {
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
			again.TaskRuns = map[string]*v1.TaskRun{}
			for k, v := range in.TaskRuns {
				again.TaskRuns[k] = v
			}
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
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("updating the status of TaskRun %q: %w", tr.Name, err))
		}
	}
	return errors.Join(errs...)
}

// cleanupAttempts deletes the pods of ended attempts (the first n) that must not keep
// running: an attempt that was cancelled, timed out or whose pod failed. The pods of
// attempts that ended because their tasks ended are left to finish (and keep their logs).
func (r *Reconciler) cleanupAttempts(ctx context.Context, cr *v1beta1.CustomRun, n int) error {
	logger := logging.FromContext(ctx)
	for i := 0; i < n; i++ {
		var c *apis.Condition
		if i < len(cr.Status.RetriesStatus) {
			c = cr.Status.RetriesStatus[i].GetCondition(apis.ConditionSucceeded)
		} else {
			c = cr.Status.GetCondition(apis.ConditionSucceeded)
		}
		if c == nil || c.IsUnknown() || !observe.EndsPod(c.Reason) {
			continue
		}
		name := assemble.PodName(cr.Name, i)
		pod, err := r.PodLister.Pods(cr.Namespace).Get(name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || !metav1.IsControlledBy(pod, cr) {
			continue
		}
		logger.Infow("Deleting the pod of an ended attempt", "pod", name, "reason", c.Reason)
		if err := r.KubeClient.CoreV1().Pods(cr.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting pod %q: %w", name, err)
		}
	}
	return nil
}

// markReady sets Tekton's ready annotation once the pod's sidecars run: the first step of
// each task with sidecars waits for it. Our sidecar containers are "step-" prefixed
// (hazard 2), so Tekton's SidecarsReady, which skips those, only covers injected ones;
// the plan's sidecars are checked here.
func (r *Reconciler) markReady(ctx context.Context, pod *corev1.Pod, tasks []plan.Task) error {
	if pod == nil || pod.Annotations[readyAnnotation] == readyAnnotationValue || pod.Status.Phase != corev1.PodRunning {
		return nil
	}
	if !podconvert.SidecarsReady(pod.Status) {
		return nil
	}
	status := map[string]corev1.ContainerStatus{}
	for _, cs := range pod.Status.ContainerStatuses {
		status[cs.Name] = cs
	}
	for _, t := range tasks {
		for _, name := range t.Sidecars {
			cs, ok := status[name]
			if !ok || !(cs.State.Terminated != nil || (cs.State.Running != nil && cs.Ready)) {
				return nil
			}
		}
	}
	if _, ok := pod.Annotations[readyAnnotation]; ok {
		return podconvert.UpdateReady(ctx, r.KubeClient, *pod)
	}
	// Tekton's UpdateReady replaces the annotation, which fails when it is absent.
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, readyAnnotation, readyAnnotationValue))
	_, err := r.KubeClient.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}
