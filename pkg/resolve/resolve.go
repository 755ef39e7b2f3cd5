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
	tektonv1alpha1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	remoteresource "github.com/tektoncd/pipeline/pkg/remoteresolution/resource"
	"github.com/tektoncd/pipeline/pkg/trustedresources"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/kmeta"

	pipinpod "github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
)

// Resolver fetches what a CustomRun refers to. The controller backs it with the API
// server (NewClientResolver); `pipelineinpod render` backs it with fake clientsets
// filled from YAML files, so both go through Tekton's code.
type Resolver interface {
	// Pipeline returns the Pipeline a ref names (by name in the run's namespace, or by
	// resolver): run's own pipelineRef, or a pipeline task's in the Pipeline run runs,
	// whose resolver params take run's params and context.
	Pipeline(ctx context.Context, ref *v1.PipelineRef, run *v1.PipelineRun) (*v1.Pipeline, error)
	// Task returns the Task a PipelineTask's taskRef names, its resolver params already
	// substituted (see refsOf).
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
	asWebhook := pr.Spec.DeepCopy()
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
		p, err := r.Pipeline(ctx, s.PipelineRef, pr)
		if err != nil {
			return nil, &FetchError{Kind: "Pipeline", Err: fmt.Errorf("%s: resolving Pipeline %q: %w", refField(cr), s.PipelineRef.Name, err)}
		}
		out.Spec = p.Spec.DeepCopy()
		out.PipelineName = p.Name
	}
	if err := resolveSpec(ctx, r, out, pr, "spec.pipelineSpec", w); err != nil {
		return nil, err
	}
	// What Tekton's webhook checks on a PipelineRun, defaulted, before a reconciler sees
	// it (disable-inline-spec, timeouts, taskRunSpecs, the pod template's env, ...): the
	// webhook cannot see into a CustomRun's customSpec. After the Pipeline's own checks,
	// which bound its size first.
	if err := asWebhook.Validate(ctx); err != nil {
		return nil, fmt.Errorf("%s: invalid as a PipelineRun: %w", runField(cr), err)
	}
	return out, nil
}

// runField is where a CustomRun holds the PipelineRun spec it stands for.
func runField(cr *v1beta1.CustomRun) string {
	if cr.Spec.CustomSpec != nil {
		return "spec.customSpec.spec"
	}
	return "spec"
}

func refField(cr *v1beta1.CustomRun) string {
	if cr.Spec.CustomRef != nil {
		return "spec.customRef"
	}
	return "spec.customSpec.spec.pipelineRef"
}

// resolveSpec defaults and validates a Pipeline spec, then resolves its tasks. run is
// the PipelineRun that runs the spec: the CustomRun's, or for a child pipeline the one
// Tekton would make for it. w bounds the whole resolution (see bounds.go).
func resolveSpec(ctx context.Context, r Resolver, out *Resolved, run *v1.PipelineRun, field string, w *walk) error {
	if err := w.count(field+".tasks", out.Spec); err != nil {
		return err
	}
	out.Spec.SetDefaults(ctx)
	if err := out.Spec.Validate(ctx); err != nil {
		return fmt.Errorf("%s: invalid Pipeline %q: %w", field, out.PipelineName, err)
	}
	refs, err := refsOf(out.Spec, run, out.PipelineName)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	out.Tasks = map[string]*trresources.ResolvedTask{}
	out.Pipelines = map[string]*Resolved{}
	for _, list := range []struct {
		field string
		tasks []v1.PipelineTask
	}{{"tasks", out.Spec.Tasks}, {"finally", out.Spec.Finally}} {
		for i, pt := range list.tasks {
			f := fmt.Sprintf("%s.%s[%d]", field, list.field, i)
			sub := refs[pt.Name]
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
					p, err := r.Pipeline(ctx, pt.PipelineRef, run)
					if err != nil {
						return &FetchError{Kind: "Pipeline", Err: fmt.Errorf("%s.pipelineRef: resolving Pipeline %q: %w", f, pt.PipelineRef.Name, err)}
					}
					child.Spec, child.PipelineName = p.Spec.DeepCopy(), p.Name
				}
				// The child runs with the pipeline task's params, as the PipelineRun Tekton
				// makes for it (and as compile flattens it: the run's name and context).
				childRun := run.DeepCopy()
				childRun.Spec.Params = sub.Params
				if err := resolveSpec(ctx, r, child, childRun, f+".pipelineSpec", w); err != nil {
					return err
				}
				w.leave()
				out.Pipelines[pt.Name] = child
			case pt.TaskRef != nil && pt.TaskRef.IsCustomTask():
				return fmt.Errorf("%s.taskRef: custom task %s/%s cannot run inside one pod: its controller would need pods of its own", f, pt.TaskRef.APIVersion, pt.TaskRef.Kind)
			case pt.TaskSpec != nil && pt.TaskSpec.IsCustomTask():
				return fmt.Errorf("%s.taskSpec: custom task %s/%s cannot run inside one pod: its controller would need pods of its own", f, pt.TaskSpec.APIVersion, pt.TaskSpec.Kind)
			case pt.TaskRef != nil:
				t, err := r.Task(ctx, sub)
				if err != nil {
					return &FetchError{Kind: "Task", Err: fmt.Errorf("%s.taskRef: resolving Task %q: %w", f, pt.TaskRef.Name, err)}
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

// refsOf is what Tekton's PipelineRun reconciler resolves a Pipeline's tasks from: the
// tasks once its ApplyParameters, ApplyContexts and ApplyWorkspaces have substituted the
// run's params (and the Pipeline's defaults), its context and its workspaces into their
// taskRefs (resolver params and name) and params, by task name. A result reference
// stays as written: Tekton resolves every task before any result exists. The spec passed
// to Tekton is the tasks' names, refs and params only, so what substitution may cost is
// bounded by those (ExpansionFits) and nothing else is substituted twice.
func refsOf(ps *v1.PipelineSpec, run *v1.PipelineRun, pipelineName string) (map[string]v1.PipelineTask, error) {
	refs := &v1.PipelineSpec{Params: ps.Params, Workspaces: ps.Workspaces}
	for _, list := range []struct {
		from []v1.PipelineTask
		to   *[]v1.PipelineTask
	}{{ps.Tasks, &refs.Tasks}, {ps.Finally, &refs.Finally}} {
		for _, pt := range list.from {
			*list.to = append(*list.to, v1.PipelineTask{Name: pt.Name, TaskRef: pt.TaskRef.DeepCopy(), Params: pt.Params.DeepCopy()})
		}
	}
	if err := ExpansionFits("params", refs, run.Spec.Params, ps.Params); err != nil {
		return nil, err
	}
	refs, err := prresources.ApplyParameters(refs, run)
	if err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	refs = prresources.ApplyContexts(refs, pipelineName, run)
	refs = prresources.ApplyWorkspaces(refs, run)
	out := map[string]v1.PipelineTask{}
	for _, pt := range append(refs.Tasks, refs.Finally...) {
		out[pt.Name] = pt
	}
	return out, nil
}

// NewClientResolver resolves through the API server the way Tekton's reconcilers do.
// requester may be nil, and then `resolver:` refs fail. policies are the
// VerificationPolicies of the run's namespace: Tasks and Pipelines fetched by a resolver
// are verified against them by Tekton's own code (pkg/trustedresources, under the
// trusted-resources-verification-no-match-policy flag of ctx's configuration), and one
// that fails verification fails resolution with a *VerificationError. Like Tekton,
// Tasks and Pipelines of the run's namespace are not verified.
func NewClientResolver(k8s kubernetes.Interface, tekton versioned.Interface, requester remoteresource.Requester, cr *v1beta1.CustomRun, policies []*tektonv1alpha1.VerificationPolicy) *ClientResolver {
	if requester != nil {
		requester = ownedRequester{Requester: requester, owner: cr}
	}
	return &ClientResolver{k8s: k8s, tekton: tekton, requester: requester, cr: cr, policies: policies}
}

// ClientResolver is the Resolver of a run against the API server.
type ClientResolver struct {
	k8s       kubernetes.Interface
	tekton    versioned.Interface
	requester remoteresource.Requester
	cr        *v1beta1.CustomRun
	policies  []*tektonv1alpha1.VerificationPolicy
	// verified is the TrustedResourcesVerified condition so far (Verified).
	verified *apis.Condition
}

var _ Resolver = (*ClientResolver)(nil)

// Pipeline resolves with Tekton's GetChildPipelineFunc: by name in the run's namespace,
// or through a ResolutionRequest (owned by the CustomRun, see ownedRequester) whose
// resolver params take run's params and context and whose Pipeline Tekton verifies and
// validates with a dry-run create, as for a PipelineRun. For run's own pipelineRef this
// is what GetPipelineFunc does for a PipelineRun whose status holds no Pipeline yet:
// both hand the ref and the run to the same resolver function.
func (c *ClientResolver) Pipeline(ctx context.Context, ref *v1.PipelineRef, run *v1.PipelineRun) (*v1.Pipeline, error) {
	// Tekton substitutes params into a URL-like name in place.
	ref = ref.DeepCopy()
	get := prresources.GetChildPipelineFunc(ctx, c.k8s, c.tekton, c.requester, run.DeepCopy(), ref, c.policies)
	p, _, vr, err := get(ctx, ref.Name)
	if err != nil {
		return nil, err
	}
	if err := c.verify(p.Name, vr); err != nil {
		return nil, err
	}
	return p, nil
}

// Task resolves with Tekton's GetTaskFunc; a Task from a resolver is verified as for a
// PipelineRun's task.
func (c *ClientResolver) Task(ctx context.Context, pt v1.PipelineTask) (*v1.Task, error) {
	get := trresources.GetTaskFunc(ctx, c.k8s, c.tekton, c.requester, c.cr, pt.TaskRef, c.cr.Name+"-"+pt.Name, c.cr.Namespace, c.cr.Spec.ServiceAccountName, c.policies)
	t, _, vr, err := get(ctx, pt.TaskRef.Name)
	if err != nil {
		return nil, err
	}
	if err := c.verify(pt.Name, vr); err != nil {
		return nil, err
	}
	return t, nil
}

func (c *ClientResolver) StepActions(ctx context.Context, ts v1.TaskSpec, tr *v1.TaskRun) ([]v1.Step, error) {
	return trresources.GetStepActionsData(ctx, ts, tr.DeepCopy(), c.tekton, c.k8s, c.requester)
}

// FetchError is a Pipeline or a Task (Kind) that could not be fetched: not found, or its
// resolver failed. Tekton fails a PipelineRun with CouldntGetPipeline or CouldntGetTask
// for it.
type FetchError struct {
	Kind string
	Err  error
}

func (e *FetchError) Error() string { return e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }

// VerificationError is a resource that failed trusted-resources verification: the run
// fails with Tekton's reason for it (ResourceVerificationFailed).
type VerificationError struct {
	Err error
}

func (e *VerificationError) Error() string { return e.Err.Error() }
func (e *VerificationError) Unwrap() error { return e.Err }

// verify acts on a verification result as Tekton's PipelineRun reconciler does: an
// error fails the run, a warning or a pass sets the TrustedResourcesVerified condition
// (the last resource's counts), a skip changes nothing.
func (c *ClientResolver) verify(resource string, vr *trustedresources.VerificationResult) error {
	if vr == nil {
		return nil
	}
	switch vr.VerificationResultType {
	case trustedresources.VerificationError:
		err := fmt.Errorf("customRun %s/%s referred resource %s failed signature verification: %w", c.cr.Namespace, c.cr.Name, resource, vr.Err)
		c.verified = &apis.Condition{Type: trustedresources.ConditionTrustedResourcesVerified, Status: corev1.ConditionFalse, Message: err.Error()}
		return &VerificationError{Err: err}
	case trustedresources.VerificationWarn:
		c.verified = &apis.Condition{Type: trustedresources.ConditionTrustedResourcesVerified, Status: corev1.ConditionFalse, Message: vr.Err.Error()}
	case trustedresources.VerificationPass:
		c.verified = &apis.Condition{Type: trustedresources.ConditionTrustedResourcesVerified, Status: corev1.ConditionTrue}
	}
	return nil
}

// Verified is the TrustedResourcesVerified condition Tekton would set on the run after
// what was resolved so far: nil when no resource was verified.
func (c *ClientResolver) Verified() *apis.Condition { return c.verified }

// ownedRequester makes the CustomRun the owner of every ResolutionRequest. Tekton's
// GetPipelineFunc makes the PipelineRun it is handed the owner: here one that does not
// exist, which the garbage collector would take as a reason to delete the request
// while the run waits on it. The request's name is the same either way (it derives from
// the owner's name and namespace, the CustomRun's).
type ownedRequester struct {
	remoteresource.Requester
	owner kmeta.OwnerRefable
}

func (r ownedRequester) Submit(ctx context.Context, resolver remoteresource.ResolverName, req remoteresource.Request) (remoteresource.ResolvedResource, error) {
	return r.Requester.Submit(ctx, resolver, ownedRequest{Request: req, owner: r.owner})
}

type ownedRequest struct {
	remoteresource.Request
	owner kmeta.OwnerRefable
}

var _ remoteresource.OwnedRequest = ownedRequest{}

func (r ownedRequest) OwnerRef() metav1.OwnerReference { return *kmeta.NewControllerRef(r.owner) }
