package assemble

import (
	"encoding/json"
	"fmt"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
)

// budget weighs each task's spec, as its params will expand, before Tekton's
// substitution and pod builder make it: every task's containers end up in one pod, so
// the tasks together may not expand beyond compile.MaxExpandedBytes either. (Steps that
// a StepAction supplies are weighed only once built, by the pod's size check.)
type budget struct{ used, containers int }

func (b *budget) take(t compile.Task, tr *v1.TaskRun) error {
	spec := struct {
		Spec        *v1.TaskSpec     `json:"spec"`
		PodTemplate *pod.PodTemplate `json:"podTemplate,omitempty"`
	}{tr.Spec.TaskSpec, tr.Spec.PodTemplate}
	n, err := compile.Expansion(spec, tr.Spec.Params, tr.Spec.TaskSpec.Params)
	if err != nil {
		return err
	}
	b.used += n
	if b.used > compile.MaxExpandedBytes {
		return fmt.Errorf("pipeline task %q (TaskRun %s): spec.params: substituting params into the tasks so far would make about %d bytes, over the %d one pod can hold; pass large values through a workspace instead of a param referenced many times", t.PipelineTask, tr.Name, b.used, compile.MaxExpandedBytes)
	}
	return nil
}

// built weighs a task's step and sidecar containers as Tekton built them. They all go
// into the one pod (with more flags, never fewer), so once they alone pass MaxPodBytes
// the pod cannot fit, and building the remaining tasks would only cost time and memory.
func (b *budget) built(t compile.Task, p *corev1.Pod) error {
	raw, err := json.Marshal(p.Spec.Containers)
	if err != nil {
		return err
	}
	b.containers += len(raw)
	if b.containers > MaxPodBytes {
		return fmt.Errorf("pipeline task %q: spec.pipelineSpec: the containers of the tasks so far already take %d bytes, over the %d the API server can store in one pod (etcd's object limit); split the Pipeline", t.PipelineTask, b.containers, MaxPodBytes)
	}
	return nil
}
