// Package stages backs the reconciler's Preparer with the real stages: resolve (through
// the API server and Tekton's remote resolution), compile and build.
package stages

import (
	"context"
	"errors"
	"fmt"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"github.com/tektoncd/pipeline/pkg/pod"
	"github.com/tektoncd/pipeline/pkg/remote"
	remoteresource "github.com/tektoncd/pipeline/pkg/remoteresolution/resource"
	resolutioncommon "github.com/tektoncd/pipeline/pkg/resolution/common"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/reconciler"
	"github.com/pipelineinpod/pipelineinpod/pkg/resolve"
)

// Stages is the reconciler.Preparer of the controller.
type Stages struct {
	Images          pipeline.Images
	EntrypointImage string
	KubeClient      kubernetes.Interface
	PipelineClient  versioned.Interface
	// Requester creates and reads ResolutionRequests for `resolver:` refs.
	Requester       remoteresource.Requester
	EntrypointCache pod.EntrypointCache
}

var _ reconciler.Preparer = (*Stages)(nil)

// Prepare implements reconciler.Preparer.
func (s *Stages) Prepare(ctx context.Context, cr *v1beta1.CustomRun) (*reconciler.Prepared, error) {
	ctx, err := v1alpha1.WithTektonConfig(ctx)
	if err != nil {
		return nil, err
	}
	res := resolve.NewClientResolver(s.KubeClient, s.PipelineClient, s.Requester, cr)
	resolved, err := resolve.Resolve(ctx, res, cr)
	if err != nil {
		if errors.Is(err, remote.ErrRequestInProgress) || errors.Is(err, resolutioncommon.ErrRequestInProgress) {
			return nil, fmt.Errorf("%w: %v", reconciler.ErrInProgress, err)
		}
		return nil, &reconciler.PermanentError{Reason: reconciler.ReasonResolutionFailed, Err: err}
	}
	compiled, err := compile.Compile(ctx, cr, resolved)
	if err != nil {
		return nil, &reconciler.PermanentError{Reason: reconciler.ReasonValidationFailed, Err: err}
	}
	p := &reconciler.Prepared{PipelineName: compiled.PipelineName, Results: compiled.Results}
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
	p.Build = func(ctx context.Context, uids map[string]types.UID) (*reconciler.Built, error) {
		ctx, err := v1alpha1.WithTektonConfig(ctx)
		if err != nil {
			return nil, err
		}
		out, err := assemble.Pod(ctx, assemble.Options{
			Images:          s.Images,
			EntrypointImage: s.EntrypointImage,
			KubeClient:      s.KubeClient,
			EntrypointCache: s.EntrypointCache,
			Resolver:        res,
			TaskRunUIDs:     uids,
		}, compiled)
		if err != nil {
			if errors.Is(err, remote.ErrRequestInProgress) || errors.Is(err, resolutioncommon.ErrRequestInProgress) {
				return nil, fmt.Errorf("%w: %v", reconciler.ErrInProgress, err)
			}
			return nil, &reconciler.PermanentError{Reason: reconciler.ReasonValidationFailed, Err: err}
		}
		return &reconciler.Built{Pod: out.Pod, PVCs: out.PVCs, Plan: out.Plan}, nil
	}
	return p, nil
}
