package compile

import (
	"context"
	"fmt"
	"regexp"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tknreconciler "github.com/tektoncd/pipeline/pkg/reconciler"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/kmap"
	"knative.dev/pkg/kmeta"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
)

// MatrixIndexLabel numbers the child TaskRuns of a matrixed pipeline task.
const MatrixIndexLabel = "tekton.dev/matrixIndex"

// managedByHonoured is the context key of WithManagedByHonoured.
type managedByHonoured struct{}

// WithManagedByHonoured says that the cluster's Tekton leaves a TaskRun whose
// spec.managedBy names another controller alone (Tekton v1.5.0 and later,
// pkg/reconciler/taskrun/controller.go, taskRunFilterManagedBy): the child TaskRuns are
// then created without spec.status TaskRunPending, which only an older Tekton needs to
// keep from making their pods, and which costs a spec update per task as it starts
// (docs/design.md, hazard 1).
func WithManagedByHonoured(ctx context.Context) context.Context {
	return context.WithValue(ctx, managedByHonoured{}, true)
}

// TaskRunSpecStatus is the spec.status child TaskRuns are created with: TaskRunPending
// unless the context says the cluster's Tekton honours spec.managedBy.
func TaskRunSpecStatus(ctx context.Context) v1.TaskRunSpecStatus {
	if honoured, _ := ctx.Value(managedByHonoured{}).(bool); honoured {
		return ""
	}
	return v1.TaskRunSpecStatusPending
}

// taskRun is the child TaskRun of one matrix instance of a PipelineTask, as it will be
// created: managed by this controller rather than Tekton's, and pending where the
// cluster's Tekton needs it (WithManagedByHonoured). Compile is the one place a child
// TaskRun's metadata and spec are written.
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
			Status:             c.taskRunStatus,
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

// Labels that carry, on a child TaskRun, the identity of the outer PipelineRun when one
// created the CustomRun (Tekton labels that CustomRun with it).
const (
	ParentPipelineRunLabel    = "pipelineinpod.tekton.dev/parentPipelineRun"
	ParentPipelineRunUIDLabel = "pipelineinpod.tekton.dev/parentPipelineRunUID"
	ParentPipelineTaskLabel   = "pipelineinpod.tekton.dev/parentPipelineTask"
)

// placementLabels are Tekton's labels that say where a run sits: the PipelineRun that made
// it, as which task, of which Pipeline. On the CustomRun they name its place in an outer
// PipelineRun. A child TaskRun gets its own (its pipeline task, the inner Pipeline) and
// none naming the outer PipelineRun under Tekton's keys: Tekton's nested PipelineRuns
// give a TaskRun the PipelineRun directly above it there, and the Dashboard lists a
// PipelineRun's TaskRuns by tekton.dev/pipelineRun and places them by pipeline task
// name, so an inner task named like an outer one would show as the outer task's run.
// The outer identity goes under the Parent* labels instead.
var placementLabels = []string{
	pipeline.PipelineRunLabelKey, pipeline.PipelineRunUIDLabelKey, pipeline.PipelineTaskLabelKey,
	pipeline.MemberOfLabelKey, pipeline.PipelineLabelKey, pipeline.TaskLabelKey,
	pipeline.TaskRunLabelKey, pipeline.TaskRunUIDLabelKey, pipeline.CustomRunKey,
}

// taskLabels and taskAnnotations name one task: the pod, which runs them all, carries
// none of them.
var (
	taskLabels      = []string{pipeline.PipelineTaskLabelKey, pipeline.TaskLabelKey, pipeline.MemberOfLabelKey, MatrixIndexLabel}
	taskAnnotations = []string{v1.PipelineTaskOnErrorAnnotation}
)

// reservedAnnotations are not propagated: Tekton keeps Chains' signatures of a run on
// that run (pipeline.TektonReservedAnnotationExpr), and kubectl's last applied
// configuration describes the object it was applied to (and can be large).
var reservedAnnotations = regexp.MustCompile(pipeline.TektonReservedAnnotationExpr)

// runMeta is what every child TaskRun inherits from the CustomRun, as Tekton's
// PipelineRun reconciler gives its TaskRuns the PipelineRun's labels and annotations.
func (c *Compiled) runMeta() (labels, annotations map[string]string) {
	cr := c.CustomRun
	labels = kmap.ExcludeKeys(cr.Labels, placementLabels...)
	if outer := cr.Labels[pipeline.PipelineRunLabelKey]; outer != "" {
		labels[ParentPipelineRunLabel] = outer
		for from, to := range map[string]string{pipeline.PipelineRunUIDLabelKey: ParentPipelineRunUIDLabel, pipeline.PipelineTaskLabelKey: ParentPipelineTaskLabel} {
			if v := cr.Labels[from]; v != "" {
				labels[to] = v
			}
		}
	}
	return labels, propagatedAnnotations(cr.Annotations)
}

func propagatedAnnotations(in map[string]string) map[string]string {
	return kmap.Filter(kmap.ExcludeKeys(in, tknreconciler.KubectlLastAppliedAnnotationKey), reservedAnnotations.MatchString)
}

// taskRunMeta labels a child TaskRun the way Tekton labels a PipelineRun's, plus the
// labels of everything made for the CustomRun. The precedence is Tekton's (taskRunSpecs'
// metadata over the run's over an inline taskSpec's), under ours: the controller finds
// its TaskRuns by these labels, so a user's label must not replace them.
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
	runLabels, runAnnotations := c.runMeta()
	return metav1.ObjectMeta{
		Name:            kmeta.ChildName(c.CustomRun.Name, "-"+key),
		Namespace:       c.CustomRun.Namespace,
		Labels:          kmap.Union(specMeta.Labels, runLabels, runMeta.Labels, labels),
		Annotations:     kmap.Union(specMeta.Annotations, runAnnotations, runMeta.Annotations, annotations),
		OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(c.CustomRun)},
	}
}

// PodMeta is the labels and annotations of the run's one pod, made from its child
// TaskRuns' as Tekton makes a pod's from its TaskRun's (pkg/pod passes the TaskRun's
// through). The pod runs every task, so it carries what they carry: the run's metadata
// and each task's own, but no key that names one task, nor a key two tasks give
// different values (a pod has one value per key). Where an outer PipelineRun made the
// CustomRun, the pod carries the CustomRun's place in it under Tekton's keys, as the pod
// of that PipelineRun's task would (nothing in Tekton, tkn or the Dashboard finds pods by
// them; log shipping, NetworkPolicies and cost reports select pods by them).
// Ours (v1alpha1.ChildLabels) are for the caller to put over these.
func (c *Compiled) PodMeta() (labels, annotations map[string]string) {
	var taskLabelSets, taskAnnotationSets []map[string]string
	for _, t := range c.Tasks {
		taskLabelSets = append(taskLabelSets, kmap.ExcludeKeys(t.TaskRun.Labels, taskLabels...))
		taskAnnotationSets = append(taskAnnotationSets, kmap.ExcludeKeys(t.TaskRun.Annotations, taskAnnotations...))
	}
	placement := map[string]string{}
	if c.CustomRun.Labels[pipeline.PipelineRunLabelKey] != "" {
		for _, k := range placementLabels {
			if v, ok := c.CustomRun.Labels[k]; ok {
				placement[k] = v
			}
		}
	}
	// pkg/pod leaves the managed-by annotation off a pod, as here.
	return kmap.Union(agreed(taskLabelSets), placement), kmap.ExcludeKeys(agreed(taskAnnotationSets), tknreconciler.KubernetesManagedByAnnotationKey)
}

// agreed is the union of the maps without the keys two of them give different values.
func agreed(maps []map[string]string) map[string]string {
	out, conflicting := map[string]string{}, map[string]bool{}
	for _, m := range maps {
		for k, v := range m {
			if old, ok := out[k]; ok && old != v {
				conflicting[k] = true
			}
			out[k] = v
		}
	}
	for k := range conflicting {
		delete(out, k)
	}
	return out
}

// memberOf is where a PipelineTask is declared: Tekton's tekton.dev/memberOf value and
// the name of its list in the Pipeline spec.
func memberOf(finally bool) string {
	if finally {
		return v1.PipelineFinallyTasks
	}
	return v1.PipelineTasks
}
