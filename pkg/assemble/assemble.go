// Package assemble is the third stage of a PipelineInPod run: it turns the compiled child
// TaskRuns into the one Pod that runs them all, plus the TaskRuns and PVCs themselves.
//
// Each task's containers come from Tekton's own pod builder (pkg/pod.Builder), fed
// exactly as Tekton's TaskRun reconciler feeds it, so scripts, stepTemplate, step and
// sidecar specs, workspaces (isolated ones too), credentials, computeResources and the
// entrypoint arguments are Tekton's. assemble then merges those per-task pods into one:
// per-task volumes (/tekton/home, /workspace, /tekton/results, /tekton/run/<i>, ...)
// keep one copy per task, so no task can write another's; pipeline workspaces keep one
// volume for all; every container is renamed "step-<task>-..." (docs/design.md hazard 2);
// Tekton's per-task init containers become one; and each container's entrypoint gets
// the flags that tie it to the Plan.
package assemble

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/pod"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/kmap"
	"knative.dev/pkg/kmeta"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/resolve"
)

const (
	// MaxPodBytes is what we let a pod spec weigh: etcd refuses objects near 1.5 MiB
	// (docs/design.md hazard 7), and a little room stays for status.
	MaxPodBytes = 1400 * 1024
	// MaxPlanBytes bounds the plan annotation: all annotations of an object together
	// may not exceed 256 KiB.
	MaxPlanBytes = 200 * 1024

	// ContainerInit copies the entrypoint into the pod and stamps the pipeline's start.
	ContainerInit = "step-pip-init"
	// ContainerPlaceScripts is Tekton's place-scripts init container, once for all tasks.
	ContainerPlaceScripts = "step-pip-place-scripts"

	stateVolume = "pip-state"
	planVolume  = "pip-plan"

	retryCountSentinel = "pip.context.task.retry-count"
)

// Options are the cluster-specific inputs of an assembly.
type Options struct {
	// Images are Tekton's images (shell image for scripts, working-dir initializer).
	Images pipeline.Images
	// EntrypointImage is this project's entrypoint image; its binary is /ko-app/entrypoint.
	EntrypointImage string
	// KubeClient reads the service account's secrets for Tekton's credentials init.
	KubeClient kubernetes.Interface
	// EntrypointCache looks up the ENTRYPOINT of images whose steps have no command
	// (docs/design.md hazard 6). Nil means no registry can be reached: such steps fail the build.
	EntrypointCache pod.EntrypointCache
	// Resolver inlines StepActions.
	Resolver resolve.Resolver
	// TaskRunUIDs holds the UIDs of child TaskRuns already created, for $(context.taskRun.uid).
	TaskRunUIDs map[string]types.UID
	Attempt     int // the CustomRun retry this pod runs (0 = first); names the pod
	// PodLevelResources puts the pod's peak demand in spec.resources (Kubernetes >= 1.34,
	// see PodLevelResourcesSupported) instead of on the reporter container.
	PodLevelResources bool
}

// Output is everything a CustomRun's attempt creates.
type Output struct {
	Pod      *corev1.Pod
	TaskRuns []*v1.TaskRun
	PVCs     []*corev1.PersistentVolumeClaim
	Plan     *plan.Plan
	// Resources is what the pod requests, and why (also on the pod, AnnotationResources).
	Resources *Resources
}

// Pod makes the pod, child TaskRuns and PVCs of one attempt of a compiled run.
func Pod(ctx context.Context, opts Options, c *compile.Compiled) (*Output, error) {
	opts.KubeClient = readOnce(opts.KubeClient)
	out := &Output{Plan: &plan.Plan{}}
	if t := c.Timeouts; t != nil {
		out.Plan.PipelineTimeout, out.Plan.TasksTimeout, out.Plan.FinallyTimeout = nonZero(t.Pipeline), nonZero(t.Tasks), nonZero(t.Finally)
	}
	m := newMerger(opts)
	weigh := &budget{}
	for _, t := range c.Tasks {
		tr := t.TaskRun.DeepCopy()
		tr.UID = opts.TaskRunUIDs[tr.Name]
		if err := weigh.take(t, tr); err != nil {
			return nil, err
		}
		taskPod, err := buildTaskPod(ctx, opts, t, tr)
		if err != nil {
			return nil, fmt.Errorf("pipeline task %q (TaskRun %s): %w", t.PipelineTask, tr.Name, err)
		}
		if err := weigh.built(t, taskPod); err != nil {
			return nil, err
		}
		pt, err := m.add(t, taskPod)
		if err != nil {
			return nil, fmt.Errorf("pipeline task %q: %w", t.PipelineTask, err)
		}
		out.Plan.Tasks = append(out.Plan.Tasks, pt)
		out.TaskRuns = append(out.TaskRuns, t.TaskRun.DeepCopy())
	}
	if len(c.Tasks) == 0 {
		if err := m.addEmptyBase(ctx, c); err != nil {
			return nil, err
		}
	}
	out.PVCs = pvcs(c)
	encoded, err := out.Plan.Encode()
	if err != nil {
		return nil, err
	}
	if len(encoded) > MaxPlanBytes {
		return nil, fmt.Errorf("spec.pipelineSpec: the pipeline's plan takes %d bytes, over the %d a pod annotation can carry; split the Pipeline", len(encoded), MaxPlanBytes)
	}
	p, err := m.pod(ctx, c, encoded)
	if err != nil {
		return nil, err
	}
	if out.Resources, err = sizePod(ctx, opts, p, out.Plan); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxPodBytes {
		return nil, fmt.Errorf("spec.pipelineSpec: the one pod for %d tasks would be %d bytes, over the %d the API server can store (etcd's object limit); split the Pipeline", len(c.Tasks), len(raw), MaxPodBytes)
	}
	out.Pod = p
	return out, nil
}

func nonZero(d *metav1.Duration) *metav1.Duration {
	if d == nil || d.Duration == 0 {
		return nil
	}
	return d
}

// buildTaskPod does for one child TaskRun what Tekton's TaskRun reconciler does before
// it creates the TaskRun's pod, and returns that pod.
func buildTaskPod(ctx context.Context, opts Options, t compile.Task, tr *v1.TaskRun) (*corev1.Pod, error) {
	ts := tr.Spec.TaskSpec.DeepCopy()
	if opts.Resolver != nil {
		steps, err := opts.Resolver.StepActions(ctx, *ts, tr)
		if err != nil {
			return nil, fmt.Errorf("spec.steps[].ref: %w", err)
		}
		ts.Steps = steps
	}
	var defaults []v1.ParamSpec
	defaults = append(defaults, ts.Params...)
	// A retry count is only known in the pod: keep its reference past Tekton's context
	// substitution, which would write the TaskRun's (zero) retry count into it.
	ts = trresources.ApplyReplacements(ts, map[string]string{"context.task.retry-count": "$(" + retryCountSentinel + ")"}, nil, nil)
	ts = trresources.ApplyParameters(ts, tr, defaults...)
	ts = trresources.ApplyContexts(ts, t.TaskName, tr)
	ts = trresources.ApplyReplacements(ts, map[string]string{retryCountSentinel: "$(context.task.retry-count)"}, nil, nil)
	ts = trresources.ApplyResults(ts)
	ts = trresources.ApplyArtifacts(ts)
	ts = trresources.ApplyStepExitCodePath(ts)
	declared := map[string]bool{}
	for _, w := range ts.Workspaces {
		declared[w.Name] = true
	}
	for _, w := range tr.Spec.Workspaces {
		if !declared[w.Name] {
			ts.Workspaces = append(ts.Workspaces, v1.WorkspaceDeclaration{Name: w.Name})
		}
	}
	vols := workspace.CreateVolumes(tr.Spec.Workspaces)
	for name, v := range vols {
		v.Name = t.WorkspaceVolumes[name]
		vols[name] = v
	}
	ts = trresources.ApplyWorkspaces(ctx, ts, ts.Workspaces, tr.Spec.Workspaces, vols)
	if err := v1.ValidateUsageOfDeclaredParameters(ctx, ts.Steps, ts.Params); err != nil {
		return nil, err
	}
	var err error
	ts, err = workspace.Apply(ctx, *ts, tr.Spec.Workspaces, vols)
	if err != nil {
		return nil, err
	}
	ts = trresources.ApplyCredentialsPath(ts, pipeline.CredsDir)
	if tr.Spec.PodTemplate != nil {
		tr.Spec.PodTemplate = trresources.ApplyPodTemplateReplacements(tr.Spec.PodTemplate, tr, defaults...)
	}
	if opts.EntrypointCache == nil {
		if err := needNoLookup(ts); err != nil {
			return nil, err
		}
	}
	images := opts.Images
	images.EntrypointImage = opts.EntrypointImage
	b := pod.Builder{Images: images, KubeClient: opts.KubeClient, EntrypointCache: opts.EntrypointCache}
	p, err := b.Build(ctx, tr, *ts, defaultResources(ctx))
	if err != nil {
		return nil, err
	}
	if err := lookUpSidecarEntrypoints(ctx, b, tr, p, len(ts.Steps)); err != nil {
		return nil, err
	}
	return p, nil
}

// addEmptyBase gives the pod of a run with no task left to run (every task skipped
// before the run began, like a matrix over an empty array) the spec Tekton's pod builder
// makes for the run's service account and pod template. Tekton succeeds such a run
// without a pod; here the pod holds only the reporter, which finds nothing to wait for,
// so the run ends as every other run does, with its skipped tasks in its status.
func (m *merger) addEmptyBase(ctx context.Context, c *compile.Compiled) error {
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: c.CustomRun.Name, Namespace: c.CustomRun.Namespace},
		Spec:       v1.TaskRunSpec{ServiceAccountName: c.ServiceAccountName, PodTemplate: c.PodTemplate},
	}
	// Tekton's builder needs a step; only the spec around it is kept.
	ts := v1.TaskSpec{Steps: []v1.Step{{Name: "none", Image: m.opts.EntrypointImage, Command: []string{entrypointInImage}}}}
	images := m.opts.Images
	images.EntrypointImage = m.opts.EntrypointImage
	b := pod.Builder{Images: images, KubeClient: m.opts.KubeClient}
	base, err := b.Build(ctx, tr, ts)
	if err != nil {
		return fmt.Errorf("spec.pipelineSpec: %w", err)
	}
	m.first = base
	for _, v := range base.Spec.Volumes {
		if v.Name == binVolume {
			m.addVolumes([]corev1.Volume{v}, volumeNames{})
		}
	}
	return nil
}

// needNoLookup fails, naming the step or sidecar, when one would need its image's
// ENTRYPOINT looked up in a registry and none can be reached.
func needNoLookup(ts *v1.TaskSpec) error {
	steps, err := v1.MergeStepsWithStepTemplate(ts.StepTemplate, ts.Steps)
	if err != nil {
		return err
	}
	for i, s := range steps {
		if len(s.Command) == 0 && s.Script == "" {
			return fmt.Errorf("spec.steps[%d] (%s): no command or script, and the entrypoint of image %q cannot be looked up without a registry; give the step a command", i, s.Name, s.Image)
		}
	}
	for i, s := range ts.Sidecars {
		if len(s.Command) == 0 && s.Script == "" {
			return fmt.Errorf("spec.sidecars[%d] (%s): no command or script, and the entrypoint of image %q, which the entrypoint must run to stop the sidecar when its task ends, cannot be looked up without a registry; give the sidecar a command", i, s.Name, s.Image)
		}
	}
	return nil
}

// pvcs are the claims of the run's volumeClaimTemplate workspaces, one per run as
// Tekton makes one per PipelineRun.
func pvcs(c *compile.Compiled) []*corev1.PersistentVolumeClaim {
	var out []*corev1.PersistentVolumeClaim
	for _, w := range c.Workspaces {
		if w.ClaimTemplate == nil {
			continue
		}
		vct := w.ClaimTemplate.VolumeClaimTemplate
		meta := objectMeta(c.CustomRun, w.ClaimName, vct.Labels)
		meta.Annotations = vct.Annotations
		out = append(out, &corev1.PersistentVolumeClaim{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: meta,
			Spec:       vct.Spec,
		})
	}
	return out
}

// objectMeta is the metadata of what assemble makes for a CustomRun (the pod, PVCs):
// in its namespace, owned by it, and labelled as its child over any labels of its own.
// Compile writes the child TaskRuns' metadata.
func objectMeta(cr *v1beta1.CustomRun, name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       cr.Namespace,
		Labels:          kmap.Union(labels, v1alpha1.ChildLabels(cr)),
		OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(cr)},
	}
}

// activeDeadline bounds the pod like Tekton bounds a TaskRun's pod: the run's timeout
// and a margin, so a wedged pod does not outlive its run.
func activeDeadline(c *compile.Compiled) *int64 {
	var d time.Duration
	if c.CustomRun.Spec.Timeout != nil {
		d = c.CustomRun.Spec.Timeout.Duration
	}
	if c.Timeouts != nil && c.Timeouts.Pipeline != nil && (d == 0 || c.Timeouts.Pipeline.Duration < d) {
		d = c.Timeouts.Pipeline.Duration
	}
	if d == 0 {
		return nil
	}
	s := int64(d.Seconds()*1.5) + 30
	return &s
}
