package reconciler

import (
	"context"
	"encoding/json"
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// ReportReader reads the task states the reporter container has streamed so far.
type ReportReader interface {
	Read(ctx context.Context, pod *corev1.Pod) (states map[string]plan.TaskState, done bool, err error)
}

// PodLogReports reads the reporter container's log through the pods/log API: the one
// channel that carries results of any size (termination messages are capped at 12 KiB
// per pod, DESIGN.md hazard 3).
type PodLogReports struct {
	KubeClient kubernetes.Interface
}

// Read implements ReportReader.
func (p PodLogReports) Read(ctx context.Context, pod *corev1.Pod) (map[string]plan.TaskState, bool, error) {
	req := p.KubeClient.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: plan.ReporterContainer})
	rc, err := req.Stream(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("reading the log of %s/%s container %s: %w", pod.Namespace, pod.Name, plan.ReporterContainer, err)
	}
	defer rc.Close()
	return plan.ReadReport(rc)
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

// AnnotationRun is the pod annotation holding what observing the run needs besides the
// Plan. The pod is the one object that lives exactly as long as the attempt, and it is
// written once, so the controller never has to resolve and compile the run again to
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
