package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	podconvert "github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/logging"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

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

// AnnotationRun is the pod annotation holding what observing the run needs besides the
// Plan. The pod is the one object that lives exactly as long as the run attempt, and it
// is written once, so the controller never has to resolve and compile the run again to
// observe it (or after a restart).
const AnnotationRun = "pipelineinpod.tekton.dev/run"

type runRecord struct {
	PipelineName string              `json:"pipelineName,omitempty"`
	Results      []v1.PipelineResult `json:"results,omitempty"`
	Skipped      []v1.SkippedTask    `json:"skipped,omitempty"`
	Matrixed     []string            `json:"matrixed,omitempty"`
}

func (r runRecord) matrixed() map[string]bool {
	m := map[string]bool{}
	for _, n := range r.Matrixed {
		m[n] = true
	}
	return m
}

func (r runRecord) encode() (string, error) {
	b, err := json.Marshal(r)
	return string(b), err
}

// readPlan takes the attempt's tasks and run record from its pod. A pod whose plan
// cannot be read, or whose annotations were changed after creation (digest.go), cannot
// be observed: the run fails.
func (a *runAttempt) readPlan() error {
	if err := a.checkDigests(); err != nil {
		return err
	}
	p, rec, err := planOf(a.pod)
	if err != nil {
		return &prepare.Failure{Reason: prepare.ReasonValidationFailed, Err: err}
	}
	a.tasks, a.record = p.Tasks, rec
	return nil
}

// planOf reads the Plan and run record back from the attempt's pod.
func planOf(pod *corev1.Pod) (*plan.Plan, runRecord, error) {
	var rec runRecord
	raw, ok := pod.Annotations[plan.AnnotationPlan]
	if !ok {
		return nil, rec, fmt.Errorf("pod %q has no %s annotation", pod.Name, plan.AnnotationPlan)
	}
	p, err := plan.Decode([]byte(raw))
	if err != nil {
		return nil, rec, fmt.Errorf("pod %q: %w", pod.Name, err)
	}
	if s := pod.Annotations[AnnotationRun]; s != "" {
		if err := json.Unmarshal([]byte(s), &rec); err != nil {
			return nil, rec, fmt.Errorf("pod %q: decoding %s: %w", pod.Name, AnnotationRun, err)
		}
	}
	return p, rec, nil
}

// PodLogReports reads the reporter container's log in one request, the whole log the
// kubelet serves (up to MaxLogReadBytes), folded in bounded memory. The log is the one
// channel that carries results of any size (termination messages are capped at 12 KiB
// per pod, docs/design.md hazard 3). Followers, which the controller uses, read it
// incrementally instead.
type PodLogReports struct {
	Source LogSource
}

var _ ReportReader = PodLogReports{}

// Read implements ReportReader. States are attributed as the plan's tasks (states of
// any other key are ignored).
func (p PodLogReports) Read(ctx context.Context, pod *corev1.Pod) (map[string]plan.TaskState, bool, error) {
	pl, _, err := planOf(pod)
	if err != nil {
		return nil, false, err
	}
	rc, err := p.Source.Open(ctx, pod, &corev1.PodLogOptions{Container: plan.ReporterContainer, LimitBytes: ptr.To[int64](MaxLogReadBytes)})
	if err != nil {
		return nil, false, fmt.Errorf("reading the log of %s/%s container %s: %w", pod.Namespace, pod.Name, plan.ReporterContainer, err)
	}
	defer rc.Close()
	f := pl.NewFolder(limitsFor(ctx))
	err = f.Fold(rc)
	return f.States(), f.Done(), err
}

// reporterStarted tells whether the reporter container has a log to read.
func reporterStarted(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == plan.ReporterContainer {
			return cs.State.Running != nil || cs.State.Terminated != nil
		}
	}
	return false
}

// readReport reads the reporter's log once it has one. A pod that is still running and
// whose log cannot be read is looked at again later rather than observed without its
// report (which would look like tasks that never ran); a pod that has ended is observed
// with whatever could be read.
func (r *Reconciler) readReport(ctx context.Context, pod *corev1.Pod) (map[string]plan.TaskState, bool, error) {
	if pod == nil || !reporterStarted(pod) || r.Reports == nil {
		return nil, false, nil
	}
	// A kubelet that does not answer must not hold the reconcile (and its worker) either:
	// a read that takes longer fails, and counts toward LogReadTimeout.
	rctx, cancel := context.WithTimeout(ctx, logRequestTimeout)
	defer cancel()
	states, done, err := r.Reports.Read(rctx, pod)
	if err != nil {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			// What was read before the error, if anything.
			return states, done, nil
		}
		return nil, false, err
	}
	return states, done, nil
}

// markReady sets Tekton's ready annotation once the pod's sidecars run: the first step of
// each task with sidecars waits for it. Our sidecar containers are "step-" prefixed
// (hazard 2), so Tekton's SidecarsReady, which skips those, only covers injected ones;
// the plan's sidecars are checked here.
func (r *Reconciler) markReady(ctx context.Context, pod *corev1.Pod, tasks []plan.Task) error {
	if pod == nil || pod.Annotations[plan.ReadyAnnotation] == plan.ReadyAnnotationValue || pod.Status.Phase != corev1.PodRunning {
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
	return r.patchReady(ctx, pod)
}

// patchReady sets Tekton's ready annotation on pod.
func (r *Reconciler) patchReady(ctx context.Context, pod *corev1.Pod) error {
	if _, ok := pod.Annotations[plan.ReadyAnnotation]; ok {
		return podconvert.UpdateReady(ctx, r.KubeClient, *pod)
	}
	// Tekton's UpdateReady replaces the annotation, which fails when it is absent.
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, plan.ReadyAnnotation, plan.ReadyAnnotationValue))
	_, err := r.KubeClient.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// readyAtCreate tells whether the pod can be marked ready as soon as it is created.
// Tekton's pod builder leaves the annotation unset when a task has sidecars or when the
// cluster says admission may inject some (feature flag
// running-in-environment-with-injected-sidecars, true by default), and its reconciler
// sets it once every container runs: with 50 tasks, the first step then waits for the
// last container to start and for the kubelet to refresh the downward API volume,
// seconds in all (docs/design.md, "Starting the first task"). Injection happens only at
// admission and a pod's containers never change after it, so the pod the API server
// returns from the create says it all: when it holds exactly the containers sent and no
// task has sidecars, nothing can ever need waiting for.
func readyAtCreate(sent, created *corev1.Pod, p *plan.Plan) bool {
	return created != nil && mayStartReady(sent, p) && sameContainers(sent, created)
}

// mayStartReady tells whether pod, not yet marked ready, could be, as far as its own
// tasks go: none has sidecars. What admission does to it decides the rest
// (sameContainers).
func mayStartReady(pod *corev1.Pod, p *plan.Plan) bool {
	return pod.Annotations[plan.ReadyAnnotation] != plan.ReadyAnnotationValue && noSidecars(p)
}

// sameContainers tells whether admission left the pod's containers as sent.
func sameContainers(sent, admitted *corev1.Pod) bool {
	sameName := func(x, y corev1.Container) bool { return x.Name == y.Name }
	return slices.EqualFunc(sent.Spec.Containers, admitted.Spec.Containers, sameName) &&
		slices.EqualFunc(sent.Spec.InitContainers, admitted.Spec.InitContainers, sameName)
}

// noSidecars tells whether no task of the plan has sidecars.
func noSidecars(p *plan.Plan) bool {
	return !slices.ContainsFunc(p.Tasks, func(t plan.Task) bool { return len(t.Sidecars) > 0 })
}

// deleteEndedPods deletes the pods of ended run attempts (the first n) that must not keep
// running: an attempt that was cancelled, timed out or whose pod failed. The pods of
// attempts that ended because their tasks ended are left to finish (and keep their logs).
func (r *Reconciler) deleteEndedPods(ctx context.Context, cr *v1beta1.CustomRun, n int) error {
	logger := logging.FromContext(ctx)
	for i := range n {
		var c *apis.Condition
		if i < len(cr.Status.RetriesStatus) {
			c = cr.Status.RetriesStatus[i].GetCondition(apis.ConditionSucceeded)
		} else {
			c = cr.Status.GetCondition(apis.ConditionSucceeded)
		}
		if c == nil || c.IsUnknown() || !observe.EndsPod(c.Reason) {
			continue
		}
		name := plan.PodName(cr.Name, i)
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
		logger.Infow("Deleting the pod of an ended run attempt", "pod", name, "reason", c.Reason)
		if err := r.KubeClient.CoreV1().Pods(cr.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting pod %q: %w", name, err)
		}
	}
	return nil
}
