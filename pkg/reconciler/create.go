package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/kmap"
	pkgreconciler "knative.dev/pkg/reconciler"

	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

// ReasonResolving is the running reason while a remote resolution is in progress,
// Tekton's PipelineRun reason for the same wait.
const ReasonResolving = string(v1.PipelineRunReasonResolvingPipelineRef)

// start prepares the run attempt and creates what it needs, in the order the pod needs
// them: child TaskRuns (their UIDs go into the pod), PVCs, then the pod. Every create
// tolerates AlreadyExists, so a restart at any point resumes without making anything
// twice. On success a holds the pod, its run record and plan, and the child TaskRuns;
// an error is classified as pkg/prepare's are (see stopFor).
func (r *Reconciler) start(ctx context.Context, cr *v1beta1.CustomRun, a *runAttempt) error {
	prep, err := r.Preparer.Prepare(ctx, cr)
	if err != nil {
		return err
	}
	if prep.Verified != nil {
		// Trusted resources: passed, or a warning, as Tekton records it on a PipelineRun.
		cr.Status.SetCondition(prep.Verified)
	}
	rec := runRecord{PipelineName: prep.PipelineName, Results: prep.Results, Skipped: prep.Skipped, Matrixed: prep.Matrixed}
	children := byName(a.taskRuns)
	uids := map[string]types.UID{}
	for _, tr := range prep.TaskRuns {
		got, err := r.getOrCreateTaskRun(ctx, cr, tr)
		if err != nil {
			return err
		}
		uids[got.Name] = got.UID
		children[got.Name] = got
	}
	out, err := prep.Assemble(ctx, a.number, uids)
	if err != nil {
		return err
	}
	for _, pvc := range out.PVCs {
		if _, err := r.KubeClient.CoreV1().PersistentVolumeClaims(cr.Namespace).Create(ctx, pvc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating PersistentVolumeClaim %q: %w", pvc.Name, err)
		}
	}
	pod, err := r.createPod(ctx, cr, out.Pod, rec)
	if err != nil {
		return err
	}
	a.pod, a.podCreated, a.record, a.tasks = pod, true, rec, nil
	if p, _, err := planOf(pod); err == nil {
		a.tasks = p.Tasks
	}
	a.taskRuns = nil
	for _, tr := range children {
		a.taskRuns = append(a.taskRuns, tr)
	}
	sort.Slice(a.taskRuns, func(i, j int) bool { return a.taskRuns[i].Name < a.taskRuns[j].Name })
	return nil
}

// stopFor turns an error that stops this reconcile into the CustomRun's status and the
// reconcile's event: a remote resolution in progress is looked at again, a
// prepare.Failure fails the run, anything else is retried by the work queue.
func (r *Reconciler) stopFor(cr *v1beta1.CustomRun, err error) pkgreconciler.Event {
	if errors.Is(err, prepare.ErrInProgress) {
		cr.Status.MarkCustomRunRunning(ReasonResolving, "%v", err)
		return controller.NewRequeueAfter(r.interval())
	}
	var f *prepare.Failure
	if errors.As(err, &f) {
		r.fail(cr, f.Reason, f.Error())
		return nil
	}
	return err
}

// getOrCreateTaskRun creates a child TaskRun as prepared (labels, owner reference and
// spec.managedBy included), or returns the one a former reconcile made.
func (r *Reconciler) getOrCreateTaskRun(ctx context.Context, cr *v1beta1.CustomRun, tr *v1.TaskRun) (*v1.TaskRun, error) {
	if got, err := r.TaskRunLister.TaskRuns(cr.Namespace).Get(tr.Name); err == nil {
		return owned(cr, got)
	}
	created, err := r.PipelineClient.TektonV1().TaskRuns(cr.Namespace).Create(ctx, tr, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		if created, err = r.PipelineClient.TektonV1().TaskRuns(cr.Namespace).Get(ctx, tr.Name, metav1.GetOptions{}); err == nil {
			return owned(cr, created)
		}
	}
	if err != nil {
		return nil, refused(fmt.Sprintf("creating TaskRun %q", tr.Name), err)
	}
	return created, nil
}

// createPod creates the attempt's pod as assembled, with the run record observing it
// needs, or returns the one a former reconcile made.
func (r *Reconciler) createPod(ctx context.Context, cr *v1beta1.CustomRun, assembled *corev1.Pod, rec runRecord) (*corev1.Pod, error) {
	encoded, err := rec.encode()
	if err != nil {
		return nil, err
	}
	pod := assembled.DeepCopy()
	pod.Annotations = kmap.Union(pod.Annotations, map[string]string{AnnotationRun: encoded})
	created, err := r.KubeClient.CoreV1().Pods(cr.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = r.KubeClient.CoreV1().Pods(cr.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && !metav1.IsControlledBy(created, cr) {
			err = &prepare.Failure{Reason: prepare.ReasonValidationFailed, Err: fmt.Errorf("pod %q already exists and does not belong to CustomRun %q", pod.Name, cr.Name)}
		}
	}
	if err != nil {
		return nil, refused(fmt.Sprintf("creating pod %q", pod.Name), err)
	}
	return created, nil
}

// refused tells an object the API server will never accept (invalid, too large: hazard
// 7) from a failure worth retrying (unreachable, quota, conflict).
func refused(what string, err error) error {
	var f *prepare.Failure
	if errors.As(err, &f) {
		return err
	}
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err) {
		return &prepare.Failure{Reason: prepare.ReasonValidationFailed, Err: fmt.Errorf("%s: %w", what, err)}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func owned(cr *v1beta1.CustomRun, tr *v1.TaskRun) (*v1.TaskRun, error) {
	if !metav1.IsControlledBy(tr, cr) {
		return nil, &prepare.Failure{Reason: prepare.ReasonValidationFailed, Err: fmt.Errorf("TaskRun %q already exists and does not belong to CustomRun %q", tr.Name, cr.Name)}
	}
	return tr, nil
}
