// Package prepare is the one path from a CustomRun to what a run attempt of it creates:
// resolve, compile, then assemble. The controller runs it against the API server; render
// runs it offline, against fake clientsets holding the objects of YAML files, so the
// golden tests check what the controller makes.
//
// Its errors are classified: one wrapping ErrInProgress means "not yet" (a remote
// resolution is still running; look again later), a *Failure means no retry will fix the
// run (it fails with the failure's reason); any other error is worth retrying.
package prepare

import (
	"context"
	"errors"
	"fmt"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tektonv1alpha1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	alpha1listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/pod"
	"github.com/tektoncd/pipeline/pkg/remote"
	remoteresource "github.com/tektoncd/pipeline/pkg/remoteresolution/resource"
	resolutioncommon "github.com/tektoncd/pipeline/pkg/resolution/common"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/resolve"
)

// Stages runs the three stages with the clients and images of one cluster (or of render's
// fake one).
type Stages struct {
	// Images are Tekton's images (shell image for scripts, working-dir initializer).
	Images pipeline.Images
	// EntrypointImage is this project's entrypoint image (cmd/entrypoint).
	EntrypointImage string
	// KubeClient and PipelineClient read what the run refers to: Tasks, Pipelines,
	// StepActions, the service account's secrets.
	KubeClient     kubernetes.Interface
	PipelineClient versioned.Interface
	// Requester creates and reads ResolutionRequests for `resolver:` refs. Nil (offline):
	// such refs fail.
	Requester remoteresource.Requester
	// EntrypointCache looks up the ENTRYPOINT of images whose steps have no command. Nil
	// (offline): such steps fail.
	EntrypointCache pod.EntrypointCache
	// PodLevelResources puts the pod's peak demand in spec.resources (Kubernetes >= 1.34,
	// see assemble.PodLevelResourcesSupported) instead of on the reporter container.
	PodLevelResources bool
	// VerificationPolicies lists the VerificationPolicies of a run's namespace, which
	// resolution verifies remote Tasks and Pipelines against as Tekton does. Nil
	// (offline): none.
	VerificationPolicies alpha1listers.VerificationPolicyLister
}

// Prepared is a resolved and compiled run, before its pod is assembled: the pod needs the
// UIDs of the child TaskRuns ($(context.taskRun.uid)), which exist only once they are
// created.
type Prepared struct {
	PipelineName string
	// Results is the Pipeline's results spec.
	Results []v1.PipelineResult
	// Skipped are pipeline tasks skipped before anything runs (they get no TaskRun).
	Skipped []v1.SkippedTask
	// Matrixed names the pipeline tasks fanned out by a matrix: their results aggregate.
	Matrixed []string
	// Verified is the TrustedResourcesVerified condition Tekton would set on the run
	// (pass, or a warning), nil when nothing was verified.
	Verified *apis.Condition
	// TaskRuns are the child TaskRuns to create, with their labels, owner reference and
	// spec.managedBy.
	TaskRuns []*v1.TaskRun
	// Assemble makes the pod of a run attempt (named for it), its PVCs and its plan, given
	// the UIDs of the child TaskRuns created (none offline).
	Assemble func(ctx context.Context, runAttempt int, taskRunUIDs map[string]types.UID) (*assemble.Output, error)
}

// ErrInProgress is wrapped by an error that means "not yet": a remote resolution
// (ResolutionRequest) is still running.
var ErrInProgress = errors.New("resolution in progress")

// Failure is an error no retry will fix: the run fails with Reason and the error's
// message, which names the field at fault. (Knative's controller.NewPermanentError is
// another thing: it only stops the work queue from retrying a key.)
type Failure struct {
	Reason string
	Err    error
}

func (e *Failure) Error() string { return e.Err.Error() }
func (e *Failure) Unwrap() error { return e.Err }

// Reasons of a Failure.
const (
	ReasonResolutionFailed = "ResolutionFailed"
	ReasonValidationFailed = "ValidationFailed"
	// ReasonResourceVerificationFailed is Tekton's for a Task or Pipeline that fails
	// trusted-resources verification.
	ReasonResourceVerificationFailed = string(v1.PipelineRunReasonResourceVerificationFailed)
	// ReasonCouldntGetPipeline and ReasonCouldntGetTask are Tekton's for a Pipeline or a
	// Task that cannot be fetched (missing, or its resolver failed); ResolutionFailed is
	// for the rest of resolution (StepActions, cycles, bounds).
	ReasonCouldntGetPipeline = string(v1.PipelineRunReasonCouldntGetPipeline)
	ReasonCouldntGetTask     = string(v1.PipelineRunReasonCouldntGetTask)
)

// Prepare resolves and compiles the run. Tekton's configuration (feature flags,
// defaults) is the one ctx carries (config.ToContext: the controller's store of the
// cluster's Tekton ConfigMaps), else Tekton's defaults: Tekton's SetDefaults and Validate
// read it from there.
func (s *Stages) Prepare(ctx context.Context, cr *v1beta1.CustomRun) (*Prepared, error) {
	var policies []*tektonv1alpha1.VerificationPolicy
	if s.VerificationPolicies != nil {
		var err error
		// As Tekton's reconcilers list them: every policy of the run's namespace.
		if policies, err = s.VerificationPolicies.VerificationPolicies(cr.Namespace).List(labels.Everything()); err != nil {
			return nil, fmt.Errorf("listing the VerificationPolicies of namespace %s: %w", cr.Namespace, err)
		}
	}
	res := resolve.NewClientResolver(s.KubeClient, s.PipelineClient, s.Requester, cr, policies)
	resolved, err := resolve.Resolve(ctx, res, cr)
	if err != nil {
		return nil, classify(ReasonResolutionFailed, err)
	}
	compiled, err := compile.Compile(ctx, cr, resolved)
	if err != nil {
		reason := ReasonValidationFailed
		var re *compile.ReasonError
		if errors.As(err, &re) {
			reason = re.Reason
		}
		return nil, &Failure{Reason: reason, Err: err}
	}
	p := prepared(compiled)
	p.Verified = res.Verified()
	p.Assemble = s.assembler(res, compiled)
	return p, nil
}

// prepared is what a compiled run tells before its pod exists.
func prepared(compiled *compile.Compiled) *Prepared {
	p := &Prepared{PipelineName: compiled.PipelineName, Results: compiled.Results}
	for _, sk := range compiled.Skipped {
		p.Skipped = append(p.Skipped, v1.SkippedTask{Name: sk.PipelineTask, Reason: sk.Reason})
	}
	matrixed := map[string]bool{}
	for _, t := range compiled.Tasks {
		p.TaskRuns = append(p.TaskRuns, t.TaskRun.DeepCopy())
		if _, ok := t.TaskRun.Labels[compile.MatrixIndexLabel]; ok && !matrixed[t.PipelineTask] {
			matrixed[t.PipelineTask] = true
			p.Matrixed = append(p.Matrixed, t.PipelineTask)
		}
	}
	return p
}

// assembler is Prepared.Assemble for a compiled run; res, the run's resolver, inlines
// StepActions (remote ones too) as the pod is assembled.
func (s *Stages) assembler(res resolve.Resolver, compiled *compile.Compiled) func(context.Context, int, map[string]types.UID) (*assemble.Output, error) {
	return func(ctx context.Context, runAttempt int, uids map[string]types.UID) (*assemble.Output, error) {
		out, err := assemble.Pod(podBuilderContext(ctx), assemble.Options{
			Images:            s.Images,
			EntrypointImage:   s.EntrypointImage,
			KubeClient:        s.KubeClient,
			EntrypointCache:   s.EntrypointCache,
			Resolver:          res,
			TaskRunUIDs:       uids,
			Attempt:           runAttempt,
			PodLevelResources: s.PodLevelResources,
		}, compiled)
		if err != nil {
			return nil, classify(ReasonValidationFailed, err)
		}
		return out, nil
	}
}

// podBuilderContext is ctx with Tekton's configuration as Tekton's pod builder must see
// it for our pod. Results travel from every step through the pod's state volume to the
// reporter's log, whatever results-from says: Tekton's results sidecar (results-from:
// sidecar-logs), which reads what Tekton's entrypoint writes, would find nothing there,
// and its image is not one the controller deploys.
func podBuilderContext(ctx context.Context) context.Context {
	cfg := config.FromContextOrDefaults(ctx)
	if cfg.FeatureFlags.ResultExtractionMethod == config.ResultExtractionMethodTerminationMessage {
		return ctx
	}
	c := *cfg
	c.FeatureFlags = cfg.FeatureFlags.DeepCopy()
	c.FeatureFlags.ResultExtractionMethod = config.ResultExtractionMethodTerminationMessage
	return config.ToContext(ctx, &c)
}

// classify tells a remote resolution still in progress from an error that fails the run
// with reason.
func classify(reason string, err error) error {
	if errors.Is(err, remote.ErrRequestInProgress) || errors.Is(err, resolutioncommon.ErrRequestInProgress) {
		return fmt.Errorf("%w: %w", ErrInProgress, err)
	}
	var verr *resolve.VerificationError
	var ferr *resolve.FetchError
	switch {
	case errors.As(err, &verr):
		reason = ReasonResourceVerificationFailed
	case errors.As(err, &ferr) && ferr.Kind == "Pipeline":
		reason = ReasonCouldntGetPipeline
	case errors.As(err, &ferr) && ferr.Kind == "Task":
		reason = ReasonCouldntGetTask
	}
	return &Failure{Reason: reason, Err: err}
}
