package compile

import (
	"fmt"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/kmap"
	"knative.dev/pkg/kmeta"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
)

// MatrixIndexLabel numbers the child TaskRuns of a matrixed pipeline task.
const MatrixIndexLabel = "tekton.dev/matrixIndex"

// taskRun is the child TaskRun of one matrix instance of a PipelineTask, as it will be
// created: pending, and managed by this controller rather than Tekton's. Compile is the
// one place a child TaskRun's metadata and spec are written.
func (c *Compiled) taskRun(p *pipelineTask, key string, i int, combo v1.Params) *v1.TaskRun {
	params := append(append(v1.Params{}, combo...), p.pt.Params...)
	return &v1.TaskRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: "TaskRun"},
		ObjectMeta: c.taskRunMeta(p, key, i),
		Spec: v1.TaskRunSpec{
			Params:             runtimeParams(params, p.task.TaskSpec.Params),
			TaskSpec:           p.task.TaskSpec.DeepCopy(),
			ServiceAccountName: c.ServiceAccountName,
			PodTemplate:        c.PodTemplate,
			Status:             v1.TaskRunSpecStatusPending,
			ManagedBy:          ptr.To(v1alpha1.TaskRunManagedBy),
			Retries:            p.pt.Retries,
			Timeout:            p.timeout,
			Workspaces:         p.workspaces,
			StepSpecs:          p.runSpec.StepSpecs,
			SidecarSpecs:       p.runSpec.SidecarSpecs,
			ComputeResources:   p.runSpec.ComputeResources,
		},
	}
}

// taskRunMeta labels a child TaskRun the way Tekton labels a PipelineRun's, plus the
// labels of everything made for the CustomRun. Metadata the Pipeline gives the task (an
// inline taskSpec's, then taskRunSpecs') goes under them: the controller finds its
// TaskRuns by these labels, so a user's label must not replace them.
func (c *Compiled) taskRunMeta(p *pipelineTask, key string, i int) metav1.ObjectMeta {
	labels := kmap.Union(v1alpha1.ChildLabels(c.CustomRun), map[string]string{
		pipeline.PipelineLabelKey:     c.PipelineName,
		pipeline.PipelineTaskLabelKey: p.pt.Name,
		pipeline.MemberOfLabelKey:     memberOf(p.finally),
	})
	if p.task.TaskName != "" {
		labels[pipeline.TaskLabelKey] = p.task.TaskName
	}
	if p.pt.IsMatrixed() {
		labels[MatrixIndexLabel] = fmt.Sprint(i)
	}
	annotations := map[string]string{}
	if p.pt.OnError == v1.PipelineTaskContinue {
		annotations[v1.PipelineTaskOnErrorAnnotation] = string(v1.PipelineTaskContinue)
	}
	var specMeta, runMeta v1.PipelineTaskMetadata
	if p.pt.TaskSpec != nil {
		specMeta = p.pt.TaskSpecMetadata()
	}
	if p.runSpec.Metadata != nil {
		runMeta = *p.runSpec.Metadata
	}
	return metav1.ObjectMeta{
		Name:            kmeta.ChildName(c.CustomRun.Name, "-"+key),
		Namespace:       c.CustomRun.Namespace,
		Labels:          kmap.Union(specMeta.Labels, runMeta.Labels, labels),
		Annotations:     kmap.Union(annotations, specMeta.Annotations, runMeta.Annotations),
		OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(c.CustomRun)},
	}
}

// memberOf is where a PipelineTask is declared: Tekton's tekton.dev/memberOf value and
// the name of its list in the Pipeline spec.
func memberOf(finally bool) string {
	if finally {
		return v1.PipelineFinallyTasks
	}
	return v1.PipelineTasks
}
