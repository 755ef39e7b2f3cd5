// Package resolve is the first stage of a PipelineInPod run: it finds the Pipeline a
// CustomRun names, every Task its PipelineTasks name, and the StepActions their steps
// name, then runs Tekton's own defaulting and validation on them.
//
// Resolution is Tekton's: the Resolver built by NewClientResolver calls the same
// functions Tekton's PipelineRun and TaskRun reconcilers call (local refs through the
// Tekton clientset, `resolver:` refs through ResolutionRequests), so a Pipeline resolves
// here exactly as it would for a PipelineRun.
package resolve

import (
	"context"
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/remoteresolution/remote/resolution"
	remoteresource "github.com/tektoncd/pipeline/pkg/remoteresolution/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	pipinpod "github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
)

// Resolver fetches what a CustomRun refers to. The controller backs it with the API
// server (NewClientResolver); `pipelineinpod render` backs it with fake clientsets
// filled from YAML files, so both go through Tekton's code.
type Resolver interface {
	// Pipeline returns the Pipeline a ref names (by name in the run's namespace, or by resolver).
	Pipeline(ctx context.Context, ref *v1.PipelineRef) (*v1.Pipeline, error)
	// Task returns the Task a PipelineTask's taskRef names.
	Task(ctx context.Context, pt v1.PipelineTask) (*v1.Task, error)
	// StepActions returns the task's steps with every StepAction ref inlined, for the
	// TaskRun that will run it (StepAction params resolve against its params).
	StepActions(ctx context.Context, ts v1.TaskSpec, tr *v1.TaskRun) ([]v1.Step, error)
}

// Resolved is a Pipeline with everything it refers to, defaulted and validated.
type Resolved struct {
	// PipelineRun is the CustomRun seen as the PipelineRun it stands for: Tekton's
	// substitution, validation and naming functions all take one.
	PipelineRun  *v1.PipelineRun
	PipelineName string
	Spec         *v1.PipelineSpec
	// Tasks holds the resolved Task of every PipelineTask (tasks and finally) by name.
	Tasks map[string]*trresources.ResolvedTask
	// Pipelines holds the resolved child Pipeline of every pipelines-in-pipelines task.
	Pipelines map[string]*Resolved
}

// PipelineRunFor returns the PipelineRun a CustomRun stands for. Its name, UID and
// namespace are the CustomRun's, so $(context.pipelineRun.*) name the CustomRun.
func PipelineRunFor(cr *v1beta1.CustomRun, s *pipinpod.Spec) *v1.PipelineRun {
	pr := &v1.PipelineRun{
		TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        cr.Name,
			Namespace:   cr.Namespace,
			UID:         cr.UID,
			Labels:      cr.Labels,
			Annotations: cr.Annotations,
		},
		Spec: v1.PipelineRunSpec{
			PipelineRef:     s.PipelineRef,
			PipelineSpec:    s.PipelineSpec,
			Params:          pipinpod.Params(cr),
			Workspaces:      pipinpod.Workspaces(cr),
			Timeouts:        s.Timeouts,
			TaskRunTemplate: s.TaskRunTemplate,
			TaskRunSpecs:    s.TaskRunSpecs,
		},
	}
	if pr.Spec.TaskRunTemplate.ServiceAccountName == "" {
		pr.Spec.TaskRunTemplate.ServiceAccountName = cr.Spec.ServiceAccountName
	}
	return pr
}

// Resolve resolves the Pipeline of a CustomRun and every Task in it. An error that wraps
// remote.ErrRequestInProgress means a remote resolution is still running; any other
// error is final and names the field at fault.
func Resolve(ctx context.Context, r Resolver, cr *v1beta1.CustomRun) (*Resolved, error) {
	s, err := pipinpod.SpecOf(cr)
	if err != nil {
		return nil, err
	}
	pr := PipelineRunFor(cr, s)
	// Tekton's PipelineRun defaulting is what makes a run's params reach an inline
	// pipelineSpec and its inline taskSpecs without declarations (implicit params).
	// Its default timeouts are not ours to add: the CustomRun's timeout governs.
	timeouts := pr.Spec.Timeouts
	pr.SetDefaults(ctx)
	pr.Spec.Timeouts = timeouts
	out := &Resolved{PipelineRun: pr}
	w := &walk{}
	switch {
	case pr.Spec.PipelineSpec != nil:
		out.Spec = pr.Spec.PipelineSpec.DeepCopy()
		out.PipelineName = cr.Name
		if err := w.root(cr.Name, nil); err != nil {
			return nil, err
		}
	default:
		if err := w.root(s.PipelineRef.Name, s.PipelineRef); err != nil {
			return nil, fmt.Errorf("%s: %w", refField(cr), err)
		}
		p, err := r.Pipeline(ctx, s.PipelineRef)
		if err != nil {
			return nil, fmt.Errorf("%s: resolving Pipeline %q: %w", refField(cr), s.PipelineRef.Name, err)
		}
		out.Spec = p.Spec.DeepCopy()
		out.PipelineName = p.Name
	}
	if err := resolveSpec(ctx, r, out, "spec.pipelineSpec", w); err != nil {
		return nil, err
	}
	return out, nil
}

func refField(cr *v1beta1.CustomRun) string {
	if cr.Spec.CustomRef != nil {
		return "spec.customRef"
	}
	return "spec.customSpec.spec.pipelineRef"
}

// resolveSpec defaults and validates a Pipeline spec, then resolves its tasks. w bounds
// the whole resolution (see bounds.go).
func resolveSpec(ctx context.Context, r Resolver, out *Resolved, field string, w *walk) error {
	if err := w.count(field+".tasks", out.Spec); err != nil {
		return err
	}
	out.Spec.SetDefaults(ctx)
	if err := out.Spec.Validate(ctx); err != nil {
		return fmt.Errorf("%s: invalid Pipeline %q: %w", field, out.PipelineName, err)
	}
	out.Tasks = map[string]*trresources.ResolvedTask{}
	out.Pipelines = map[string]*Resolved{}
	for _, list := range []struct {
		field string
		tasks []v1.PipelineTask
	}{{"tasks", out.Spec.Tasks}, {"finally", out.Spec.Finally}} {
		for i, pt := range list.tasks {
			f := fmt.Sprintf("%s.%s[%d]", field, list.field, i)
			if ref := pt.TaskRef; ref != nil && ref.APIVersion == pipinpod.APIVersion && string(ref.Kind) == pipinpod.Kind {
				// A PipelineInPod task inside a Pipeline that already runs in one pod is
				// simply a pipeline in the pipeline: its tasks join the same pod.
				pt.PipelineRef = &v1.PipelineRef{Name: ref.Name}
			}
			switch {
			case pt.PipelineSpec != nil || pt.PipelineRef != nil:
				if err := w.enter(f, pt); err != nil {
					return err
				}
				child := &Resolved{PipelineRun: out.PipelineRun, PipelineName: pt.Name}
				if pt.PipelineSpec != nil {
					child.Spec = pt.PipelineSpec.DeepCopy()
				} else {
					p, err := r.Pipeline(ctx, pt.PipelineRef)
					if err != nil {
						return fmt.Errorf("%s.pipelineRef: resolving Pipeline %q: %w", f, pt.PipelineRef.Name, err)
					}
					child.Spec, child.PipelineName = p.Spec.DeepCopy(), p.Name
				}
				if err := resolveSpec(ctx, r, child, f+".pipelineSpec", w); err != nil {
					return err
				}
				w.leave()
				out.Pipelines[pt.Name] = child
			case pt.TaskRef != nil && pt.TaskRef.IsCustomTask():
				return fmt.Errorf("%s.taskRef: custom task %s/%s cannot run inside one pod: its controller would need pods of its own", f, pt.TaskRef.APIVersion, pt.TaskRef.Kind)
			case pt.TaskSpec != nil && pt.TaskSpec.IsCustomTask():
				return fmt.Errorf("%s.taskSpec: custom task %s/%s cannot run inside one pod: its controller would need pods of its own", f, pt.TaskSpec.APIVersion, pt.TaskSpec.Kind)
			case pt.TaskRef != nil:
				t, err := r.Task(ctx, pt)
				if err != nil {
					return fmt.Errorf("%s.taskRef: resolving Task %q: %w", f, pt.TaskRef.Name, err)
				}
				if err := w.steps(field+"."+list.field, pt.Name, &t.Spec, max(1, pt.Matrix.CountCombinations())); err != nil {
					return err
				}
				ts := t.Spec.DeepCopy()
				ts.SetDefaults(ctx)
				if err := ts.Validate(ctx); err != nil {
					return fmt.Errorf("%s.taskRef: invalid Task %q: %w", f, t.Name, err)
				}
				out.Tasks[pt.Name] = &trresources.ResolvedTask{TaskName: t.Name, Kind: pt.TaskRef.Kind, TaskSpec: ts}
			case pt.TaskSpec != nil:
				ts := pt.TaskSpec.TaskSpec.DeepCopy()
				ts.SetDefaults(ctx)
				out.Tasks[pt.Name] = &trresources.ResolvedTask{TaskSpec: ts}
			default:
				return fmt.Errorf("%s: one of taskRef, taskSpec, pipelineRef or pipelineSpec is required", f)
			}
		}
	}
	return nil
}

// NewClientResolver resolves through the API server the way Tekton's reconcilers do.
// requester may be nil, and then `resolver:` refs fail.
func NewClientResolver(k8s kubernetes.Interface, tekton versioned.Interface, requester remoteresource.Requester, cr *v1beta1.CustomRun) Resolver {
	return &clientResolver{k8s: k8s, tekton: tekton, requester: requester, cr: cr}
}

type clientResolver struct {
	k8s       kubernetes.Interface
	tekton    versioned.Interface
	requester remoteresource.Requester
	cr        *v1beta1.CustomRun
}

func (c *clientResolver) pipelineRun(ref *v1.PipelineRef) *v1.PipelineRun {
	return &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: c.cr.Name, Namespace: c.cr.Namespace, UID: c.cr.UID},
		Spec: v1.PipelineRunSpec{
			PipelineRef:     ref,
			TaskRunTemplate: v1.PipelineTaskRunTemplate{ServiceAccountName: c.cr.Spec.ServiceAccountName},
			Params:          pipinpod.Params(c.cr),
		},
	}
}

func (c *clientResolver) Pipeline(ctx context.Context, ref *v1.PipelineRef) (*v1.Pipeline, error) {
	if ref.Resolver != "" && c.requester != nil {
		return c.remotePipeline(ctx, ref)
	}
	get := prresources.GetPipelineFunc(ctx, c.k8s, c.tekton, c.requester, c.pipelineRun(ref), nil)
	p, _, _, err := get(ctx, ref.Name)
	return p, err
}

// remotePipeline resolves a `resolver:` Pipeline ref with Tekton's remote resolution,
// the ResolutionRequest owned by the CustomRun. (Tekton's GetPipelineFunc would make
// the PipelineRun it is handed the owner: here one that does not exist, which the
// garbage collector would take as a reason to delete the request.)
func (c *clientResolver) remotePipeline(ctx context.Context, ref *v1.PipelineRef) (*v1.Pipeline, error) {
	strs, arrays, objects := map[string]string{}, map[string][]string{}, map[string]map[string]string{}
	for _, p := range pipinpod.Params(c.cr) {
		key := "params." + p.Name
		switch p.Value.Type {
		case v1.ParamTypeArray:
			arrays[key] = p.Value.ArrayVal
		case v1.ParamTypeObject:
			objects[key] = p.Value.ObjectVal
		default:
			strs[key] = p.Value.StringVal
		}
	}
	payload := remoteresource.ResolverPayload{ResolutionSpec: &resolutionv1beta1.ResolutionRequestSpec{
		Params: ref.Params.ReplaceVariables(strs, arrays, objects),
	}}
	if v1.RefNameLikeUrl(ref.Name) == nil {
		payload.ResolutionSpec.URL = ref.Name
	}
	obj, _, err := resolution.NewResolver(c.requester, c.cr, string(ref.Resolver), payload).Get(ctx, "pipeline", ref.Name)
	if err != nil {
		return nil, err
	}
	switch p := obj.(type) {
	case *v1.Pipeline:
		return p, nil
	case *v1beta1.Pipeline: //nolint:staticcheck // resolvers may still serve v1beta1 Pipelines, which Tekton accepts and converts to v1
		out := &v1.Pipeline{}
		if err := p.ConvertTo(ctx, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("resolver %q returned a %T, not a Pipeline", ref.Resolver, obj)
}

// Task resolves with Tekton's GetTaskFunc; for `resolver:` refs its ResolutionRequest
// is owned by the CustomRun.
func (c *clientResolver) Task(ctx context.Context, pt v1.PipelineTask) (*v1.Task, error) {
	get := trresources.GetTaskFunc(ctx, c.k8s, c.tekton, c.requester, c.cr, pt.TaskRef, c.cr.Name+"-"+pt.Name, c.cr.Namespace, c.cr.Spec.ServiceAccountName, nil)
	t, _, _, err := get(ctx, pt.TaskRef.Name)
	return t, err
}

func (c *clientResolver) StepActions(ctx context.Context, ts v1.TaskSpec, tr *v1.TaskRun) ([]v1.Step, error) {
	return trresources.GetStepActionsData(ctx, ts, tr.DeepCopy(), c.tekton, c.k8s, c.requester)
}
