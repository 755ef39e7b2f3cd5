package prepare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	resolutioncommon "github.com/tektoncd/pipeline/pkg/resolution/common"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// The stages on an inline Pipeline: TaskRuns first, then the pod assembled with their
// UIDs, named for the run attempt as the controller looks it up.
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
	b, err := p.Assemble(ctx, 1, uids)
	if err != nil {
		t.Fatal(err)
	}
	if b.Pod.Name != plan.PodName(cr.Name, 1) || len(b.Plan.Tasks) != 3 {
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
	var f *Failure
	// Tekton's reason for a PipelineRun whose Pipeline cannot be fetched.
	if !errors.As(err, &f) || f.Reason != string(v1.PipelineRunReasonCouldntGetPipeline) || !strings.Contains(err.Error(), "spec.customRef") {
		t.Errorf("err = %v", err)
	}
}

// A Task that cannot be fetched fails the run with Tekton's reason for it.
func TestPrepareMissingTask(t *testing.T) {
	raw, err := json.Marshal(v1alpha1.Spec{PipelineSpec: &v1.PipelineSpec{Tasks: []v1.PipelineTask{{Name: "a", TaskRef: &v1.TaskRef{Name: "missing"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	cr := &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns"},
		Spec: v1beta1.CustomRunSpec{CustomSpec: &v1beta1.EmbeddedCustomRunSpec{
			TypeMeta: runtime.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind}, Spec: runtime.RawExtension{Raw: raw}}},
	}
	s := &Stages{KubeClient: k8sfake.NewSimpleClientset(), PipelineClient: tektonfake.NewSimpleClientset()}
	_, err = s.Prepare(context.Background(), cr)
	var f *Failure
	if !errors.As(err, &f) || f.Reason != string(v1.PipelineRunReasonCouldntGetTask) || !strings.Contains(err.Error(), "spec.pipelineSpec.tasks[0].taskRef") {
		t.Errorf("err = %v", err)
	}
}

// A run Tekton's reconciler fails with a reason of its own fails with that reason.
func TestPrepareFailsWithTektonsReason(t *testing.T) {
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns"},
		Spec: v1.PipelineRunSpec{PipelineSpec: &v1.PipelineSpec{
			Tasks: []v1.PipelineTask{{
				Name: "m",
				// What YAML makes of `value: [true, false]`: a string.
				Matrix:   &v1.Matrix{Params: v1.Params{{Name: "x", Value: *v1.NewStructuredValues("[true,false]")}}},
				TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Params: v1.ParamSpecs{{Name: "x"}}, Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo $(params.x)"}}}},
			}},
		}},
	}
	cr, err := v1alpha1.FromPipelineRun(pr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Stages{KubeClient: k8sfake.NewSimpleClientset(), PipelineClient: tektonfake.NewSimpleClientset()}
	_, err = s.Prepare(context.Background(), cr)
	var f *Failure
	if !errors.As(err, &f) || f.Reason != v1.PipelineRunReasonInvalidMatrixParameterTypes.String() || !strings.Contains(err.Error(), `param "x" has type "string"`) {
		t.Errorf("err = %v", err)
	}
}

// A remote resolution still running is "not yet"; any other stage error fails the run
// with the stage's reason.
func TestClassify(t *testing.T) {
	if err := classify(ReasonResolutionFailed, fmt.Errorf("resolving: %w", resolutioncommon.ErrRequestInProgress)); !errors.Is(err, ErrInProgress) {
		t.Errorf("in progress: err = %#v", err)
	}
	var f *Failure
	if err := classify(ReasonValidationFailed, errors.New("spec.steps[0].ref: not found")); !errors.As(err, &f) || f.Reason != ReasonValidationFailed || errors.Is(err, ErrInProgress) {
		t.Errorf("failure: err = %#v", err)
	}
}
