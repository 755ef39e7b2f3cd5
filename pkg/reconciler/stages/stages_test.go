package stages

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/reconciler"
)

// The reconciler finds an attempt's pod by name without running the stages; it must use
// the name build gives the pod.

// The stages behind the Preparer, on an inline Pipeline: TaskRuns first, then the pod
// built with their UIDs, named as the reconciler expects.
func TestPrepareInlinePipeline(t *testing.T) {
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns"},
		Spec: v1.PipelineRunSpec{PipelineSpec: &v1.PipelineSpec{
			Tasks: []v1.PipelineTask{{
				Name:     "a",
				TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo a"}}, Results: []v1.TaskResult{{Name: "out"}}}},
			}, {
				Name:     "m",
				Matrix:   &v1.Matrix{Params: v1.Params{{Name: "x", Value: *v1.NewStructuredValues("1", "2")}}},
				TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Params: v1.ParamSpecs{{Name: "x"}}, Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo $(params.x)"}}}},
			}},
			Results: []v1.PipelineResult{{Name: "out", Value: *v1.NewStructuredValues("$(tasks.a.results.out)")}},
		}},
	}
	cr, err := v1alpha1.FromPipelineRun(pr)
	if err != nil {
		t.Fatal(err)
	}
	cr.UID = "cr-uid"
	s := &Stages{
		Images:          pipeline.Images{ShellImage: "busybox", WorkingDirInitImage: "wd"},
		EntrypointImage: "pip-entrypoint",
		// Tekton's pod builder reads the run's ServiceAccount for credentials.
		KubeClient:     k8sfake.NewSimpleClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "ns"}}),
		PipelineClient: tektonfake.NewSimpleClientset(),
	}
	ctx := context.Background()
	p, err := s.Prepare(ctx, cr)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.TaskRuns) != 3 || len(p.Results) != 1 || len(p.Matrixed) != 1 || p.Matrixed[0] != "m" {
		t.Fatalf("prepared: %d TaskRuns, results %v, matrixed %v", len(p.TaskRuns), p.Results, p.Matrixed)
	}
	uids := map[string]types.UID{}
	for _, tr := range p.TaskRuns {
		uids[tr.Name] = types.UID("uid-" + tr.Name)
	}
	b, err := p.Build(ctx, uids)
	if err != nil {
		t.Fatal(err)
	}
	if b.Pod.Name != assemble.PodName(cr.Name, 0) || len(b.Plan.Tasks) != 3 {
		t.Errorf("pod %q, %d plan tasks", b.Pod.Name, len(b.Plan.Tasks))
	}
}

// A Pipeline that cannot run in one pod fails for good, with a reason.
func TestPrepareFailsForGood(t *testing.T) {
	cr := &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns"},
		Spec:       v1beta1.CustomRunSpec{CustomRef: &v1beta1.TaskRef{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind, Name: "missing"}},
	}
	s := &Stages{KubeClient: k8sfake.NewSimpleClientset(), PipelineClient: tektonfake.NewSimpleClientset()}
	_, err := s.Prepare(context.Background(), cr)
	var pe *reconciler.PermanentError
	if !errors.As(err, &pe) || pe.Reason != reconciler.ReasonResolutionFailed || !strings.Contains(err.Error(), "spec.customRef") {
		t.Errorf("err = %v", err)
	}
}
