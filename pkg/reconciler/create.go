package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	podconvert "github.com/tektoncd/pipeline/pkg/pod"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/kmap"
	"knative.dev/pkg/logging"
	pkgreconciler "knative.dev/pkg/reconciler"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

// ReasonResolving is the running reason while a remote resolution is in progress,
// Tekton's PipelineRun reason for the same wait.
const ReasonResolving = string(v1.PipelineRunReasonResolvingPipelineRef)

// start prepares the run attempt and creates what it needs: child TaskRuns, PVCs and
// the pod, with nothing serial in the number of tasks on the way to the pod. TaskRun
// creates run concurrently (maxConcurrentWrites at a time, under the client's rate
// limit), and the pod is created alongside them: it carries a TaskRun's UID only
// through $(context.taskRun.uid), so only the TaskRuns whose task uses it are created
// before the pod is assembled. Every create tolerates AlreadyExists, so a restart at
// any point resumes without making anything twice (and findOrStart creates TaskRuns a
// pod outlived, see ensureTaskRuns). On success a holds the pod, its run record and
// plan, and the child TaskRuns; an error is classified as pkg/prepare's are (see
// stopFor).
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
	children := &taskRunSet{m: byName(a.taskRuns)}
	var first, rest []*v1.TaskRun
	for _, tr := range prep.TaskRuns {
		switch {
		case children.has(tr.Name):
		case usesTaskRunUID(tr):
			first = append(first, tr)
		default:
			rest = append(rest, tr)
		}
	}
	if err := r.createTaskRuns(ctx, cr, first, children); err != nil {
		return err
	}
	var g errgroup.Group
	g.Go(func() error { return r.createTaskRuns(ctx, cr, rest, children) })
	pod, podErr := r.createPodOf(ctx, cr, prep, a.number, children.uids(), rec)
	if err := g.Wait(); err != nil {
		var f *prepare.Failure
		if pod != nil && errors.As(err, &f) {
			// The run fails for good with a pod already running: stop it.
			if derr := r.KubeClient.CoreV1().Pods(cr.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); derr != nil && !apierrors.IsNotFound(derr) {
				err = errors.Join(err, fmt.Errorf("deleting pod %q: %w", pod.Name, derr))
			}
		}
		return err
	}
	if podErr != nil {
		return podErr
	}
	a.pod, a.podCreated, a.record, a.tasks = pod, true, rec, nil
	// The pod as the API server answered the create (or as found, when an earlier
	// reconcile created it: digest.go).
	a.digests = podDigests(pod)
	if p, _, err := planOf(pod); err == nil {
		a.tasks = p.Tasks
	}
	a.taskRuns = children.sorted()
	return nil
}

// createPodOf assembles the attempt's pod with the UIDs known and creates it, with its
// PVCs before it.
func (r *Reconciler) createPodOf(ctx context.Context, cr *v1beta1.CustomRun, prep *prepare.Prepared, attempt int, uids map[string]types.UID, rec runRecord) (*corev1.Pod, error) {
	out, err := prep.Assemble(ctx, attempt, uids)
	if err != nil {
		return nil, err
	}
	for _, pvc := range out.PVCs {
		if _, err := r.KubeClient.CoreV1().PersistentVolumeClaims(cr.Namespace).Create(ctx, pvc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating PersistentVolumeClaim %q: %w", pvc.Name, err)
		}
	}
	sent := out.Pod
	if r.admittedAsSent(ctx, out.Pod, out.Plan) {
		sent = out.Pod.DeepCopy()
		sent.Annotations = kmap.Union(sent.Annotations, map[string]string{plan.ReadyAnnotation: plan.ReadyAnnotationValue})
	}
	pod, err := r.createPod(ctx, cr, sent, rec)
	if err == nil && readyAtCreate(sent, pod, out.Plan) {
		if err := r.patchReady(ctx, pod); err != nil {
			// The ordinary path (markReady, once the pod runs) still releases it.
			logging.FromContext(ctx).Warnw("Cannot mark the pod ready at creation", "pod", pod.Name, "error", err)
		}
	}
	return pod, err
}

// admittedAsSent tells whether the pod can be created ready, its first steps never
// waiting (readyAtCreate), from a dry-run create: admission, which is where sidecars are
// injected, answers with the pod as it would store it, and the kubelet then sets up the
// pod's downward API volume with the annotation already there. Marking the pod ready
// only after its create races the kubelet, which may read the pod first: its first
// steps then wait for the kubelet's next sync of the pod, after it has started every
// container (docs/design.md, "Starting the first task"). A dry run that fails (say, a
// webhook with side effects refuses dry runs) leaves that slower way.
func (r *Reconciler) admittedAsSent(ctx context.Context, pod *corev1.Pod, p *plan.Plan) bool {
	if !mayStartReady(pod, p) {
		return false
	}
	admitted, err := r.KubeClient.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		logging.FromContext(ctx).Debugw("Dry-run create of the pod failed", "pod", pod.Name, "error", err)
		return false
	}
	return sameContainers(pod, admitted)
}

// maxConcurrentWrites bounds the API writes one reconcile has in flight (TaskRun
// creates, TaskRun status updates): as many as the client's burst lets through at once
// (cmd/controller sizes its rate as Tekton's controller does).
const maxConcurrentWrites = 20

// taskRunSet collects the child TaskRuns of a run as concurrent creates return them.
type taskRunSet struct {
	mu sync.Mutex
	m  map[string]*v1.TaskRun
}

func (s *taskRunSet) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[name]
	return ok
}

func (s *taskRunSet) add(tr *v1.TaskRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[tr.Name] = tr
}

func (s *taskRunSet) uids() map[string]types.UID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]types.UID, len(s.m))
	for n, tr := range s.m {
		out[n] = tr.UID
	}
	return out
}

func (s *taskRunSet) sorted() []*v1.TaskRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*v1.TaskRun, 0, len(s.m))
	for _, tr := range s.m {
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// createTaskRuns gets or creates trs concurrently; every create is attempted, and the
// first error returned.
func (r *Reconciler) createTaskRuns(ctx context.Context, cr *v1beta1.CustomRun, trs []*v1.TaskRun, into *taskRunSet) error {
	var g errgroup.Group
	g.SetLimit(maxConcurrentWrites)
	for _, tr := range trs {
		g.Go(func() error {
			got, err := r.getOrCreateTaskRun(ctx, cr, tr)
			if err != nil {
				return err
			}
			into.add(got)
			return nil
		})
	}
	return g.Wait()
}

// contextTaskRunUID is the one reference through which a pod carries its TaskRun's UID.
const contextTaskRunUID = "$(context.taskRun.uid)"

// usesTaskRunUID tells whether the pod needs tr's UID: Tekton's ApplyContexts puts it
// where $(context.taskRun.uid) is in the task spec once its parameters are applied
// (pkg/assemble does both as Tekton's TaskRun reconciler does). StepActions are inlined
// only as the pod is assembled, so a task with one counts as using it.
func usesTaskRunUID(tr *v1.TaskRun) bool {
	ts := tr.Spec.TaskSpec
	if ts == nil {
		return true
	}
	for _, s := range ts.Steps {
		if s.Ref != nil {
			return true
		}
	}
	applied := trresources.ApplyParameters(ts.DeepCopy(), tr, ts.Params...)
	b, err := json.Marshal(applied)
	return err != nil || bytes.Contains(b, []byte(contextTaskRunUID))
}

// ensureTaskRuns creates the child TaskRuns of a's plan that do not exist: a pod is
// created alongside its TaskRuns, so a controller that stopped in between (or a create
// that failed and was retried) leaves a pod whose TaskRuns are not all there. Only the
// informer's view is consulted first; the API server confirms before anything is
// prepared again. A run that cannot be prepared or whose TaskRuns are refused goes on
// without them (observing skips a task without its TaskRun); only an error worth
// retrying is returned.
func (r *Reconciler) ensureTaskRuns(ctx context.Context, cr *v1beta1.CustomRun, a *runAttempt) error {
	err := r.createMissingTaskRuns(ctx, cr, a)
	var f *prepare.Failure
	if errors.As(err, &f) || errors.Is(err, prepare.ErrInProgress) {
		logging.FromContext(ctx).Warnw("Cannot create the missing child TaskRuns of a running pod", "error", err)
		return nil
	}
	return err
}

func (r *Reconciler) createMissingTaskRuns(ctx context.Context, cr *v1beta1.CustomRun, a *runAttempt) error {
	have := byName(a.taskRuns)
	missing := false
	for _, t := range a.tasks {
		if have[t.TaskRun] == nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	live, err := r.PipelineClient.TektonV1().TaskRuns(cr.Namespace).List(ctx, metav1.ListOptions{LabelSelector: pipeline.CustomRunKey + "=" + cr.Name})
	if err != nil {
		return err
	}
	for i := range live.Items {
		if tr := &live.Items[i]; metav1.IsControlledBy(tr, cr) && have[tr.Name] == nil {
			have[tr.Name] = tr
		}
	}
	var create []string
	for _, t := range a.tasks {
		if have[t.TaskRun] == nil {
			create = append(create, t.TaskRun)
		}
	}
	if len(create) > 0 {
		prep, err := r.Preparer.Prepare(ctx, cr)
		if err != nil {
			return fmt.Errorf("preparing the run again to create its missing TaskRuns %v: %w", create, err)
		}
		want := map[string]bool{}
		for _, n := range create {
			want[n] = true
		}
		var trs []*v1.TaskRun
		for _, tr := range prep.TaskRuns {
			if want[tr.Name] {
				trs = append(trs, tr)
			}
		}
		set := &taskRunSet{m: have}
		err = r.createTaskRuns(ctx, cr, trs, set)
		have = set.m
		if err != nil {
			return err
		}
	}
	a.taskRuns = (&taskRunSet{m: have}).sorted()
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
	if err == nil {
		r.written.wrote(runKey(cr), "", created)
	}
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
	if permanentlyRefused(err) {
		return &prepare.Failure{Reason: prepare.ReasonValidationFailed, Err: fmt.Errorf("%s: %w", what, err)}
	}
	if podAdmissionFailed(err) {
		return &prepare.Failure{Reason: podconvert.ReasonPodAdmissionFailed, Err: fmt.Errorf("%s: %w", what, err)}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// podAdmissionFailed tells a pod that Pod Security admission (or OpenShift's security
// context constraints) refuses, which no retry changes: Tekton fails the TaskRun with
// PodAdmissionFailed for the same errors (pkg/reconciler/taskrun, isPodAdmissionFailed).
func podAdmissionFailed(err error) bool {
	return apierrors.IsForbidden(err) && (strings.Contains(err.Error(), "violates PodSecurity") ||
		strings.Contains(err.Error(), "security context constraint"))
}

func owned(cr *v1beta1.CustomRun, tr *v1.TaskRun) (*v1.TaskRun, error) {
	if !metav1.IsControlledBy(tr, cr) {
		return nil, &prepare.Failure{Reason: prepare.ReasonValidationFailed, Err: fmt.Errorf("TaskRun %q already exists and does not belong to CustomRun %q", tr.Name, cr.Name)}
	}
	return tr, nil
}
