package resolve

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tektonv1alpha1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1alpha1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
)

// A step whose ref a resolver answers with a tekton.dev/v1alpha1 StepAction is inlined
// as Tekton inlines it (GetStepActionFunc defaults, dry-run validates and converts it to
// v1beta1), its params resolved against the TaskRun's.
func TestResolverStepActionV1alpha1(t *testing.T) {
	sa := &tektonv1alpha1.StepAction{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1alpha1", Kind: "StepAction"},
		ObjectMeta: metav1.ObjectMeta{Name: "greet"},
		Spec: tektonv1alpha1.StepActionSpec{
			Image:   "busybox",
			Command: []string{"echo"},
			Args:    []string{"$(params.who)", "$(params.where.host)", "$(params.where.port)"},
			Params: v1.ParamSpecs{
				{Name: "who", Default: v1.NewStructuredValues("nobody")},
				{Name: "where", Properties: map[string]v1.PropertySpec{"host": {}, "port": {}}, Default: v1.NewObject(map[string]string{"host": "localhost", "port": "80"})},
			},
		},
	}
	cr := verifiedRun()
	tekton := tektonfake.NewSimpleClientset()
	r := NewClientResolver(k8sfake.NewSimpleClientset(), tekton, served(t, sa), cr, nil)
	ts := v1.TaskSpec{
		Params: v1.ParamSpecs{{Name: "host", Type: v1.ParamTypeString}},
		Steps: []v1.Step{{
			Name: "s",
			Ref:  &v1.Ref{ResolverRef: v1.ResolverRef{Resolver: "git", Params: v1.Params{{Name: "path", Value: *v1.NewStructuredValues("greet.yaml")}}}},
			Params: v1.Params{
				{Name: "who", Value: *v1.NewStructuredValues("world")},
				{Name: "where", Value: *v1.NewObject(map[string]string{"host": "$(params.host)"})},
			},
		}},
	}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run-t", Namespace: "ns"},
		Spec:       v1.TaskRunSpec{Params: v1.Params{{Name: "host", Value: *v1.NewStructuredValues("example.com")}}},
	}
	steps, err := r.StepActions(context.Background(), ts, tr)
	if err != nil {
		t.Fatal(err)
	}
	want := []v1.Step{{Name: "s", Image: "busybox", Command: []string{"echo"}, Args: []string{"world", "example.com", "80"}}}
	if d := cmp.Diff(want, steps); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	// Tekton sends it through admission as written, v1alpha1 (apiserver.DryRunValidate).
	var created []string
	for _, a := range tekton.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "stepactions" {
			created = append(created, a.GetResource().Version)
		}
	}
	if d := cmp.Diff([]string{"v1alpha1"}, created); d != "" {
		t.Errorf("StepActions dry-run created, by version (-want +got):\n%s", d)
	}
}
