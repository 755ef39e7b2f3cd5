package resolve

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	remoteresource "github.com/tektoncd/pipeline/pkg/remoteresolution/resource"
	resolutioncommon "github.com/tektoncd/pipeline/pkg/resolution/common"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	pipinpod "github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
)

// ownerRecorder is a Requester that records what each request is owned by and what it
// asks for, and answers "in progress", as the real one does on first submission.
type ownerRecorder struct {
	owners []metav1.OwnerReference
	params []v1.Params
}

func (o *ownerRecorder) Submit(_ context.Context, _ remoteresource.ResolverName, req remoteresource.Request) (remoteresource.ResolvedResource, error) {
	if owned, ok := req.(interface{ OwnerRef() metav1.OwnerReference }); ok {
		o.owners = append(o.owners, owned.OwnerRef())
	}
	o.params = append(o.params, req.ResolverPayload().ResolutionSpec.Params)
	return nil, resolutioncommon.ErrRequestInProgress
}

// A ResolutionRequest must be owned by the CustomRun: an owner that does not exist
// (the PipelineRun the CustomRun stands for) would let the garbage collector delete it.
func TestRemoteResolutionIsOwnedByTheCustomRun(t *testing.T) {
	cr := &v1beta1.CustomRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1beta1", Kind: "CustomRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns", UID: "cr-uid"},
		Spec: v1beta1.CustomRunSpec{
			CustomRef: &v1beta1.TaskRef{APIVersion: pipinpod.APIVersion, Kind: pipinpod.Kind, ResolverRef: v1beta1.ResolverRef{
				Resolver: "git",
				Params:   v1beta1.Params{{Name: "revision", Value: *v1beta1.NewStructuredValues("$(params.rev)")}},
			}},
			Params: v1beta1.Params{{Name: "rev", Value: *v1beta1.NewStructuredValues("main")}},
		},
	}
	rec := &ownerRecorder{}
	r := NewClientResolver(k8sfake.NewSimpleClientset(), tektonfake.NewSimpleClientset(), rec, cr, nil)
	if _, err := Resolve(context.Background(), r, cr); err == nil {
		t.Fatal("want resolution in progress")
	}
	if _, err := r.Task(context.Background(), v1.PipelineTask{Name: "t", TaskRef: &v1.TaskRef{ResolverRef: v1.ResolverRef{Resolver: "hub"}}}); err == nil {
		t.Fatal("want resolution in progress")
	}
	want := metav1.OwnerReference{APIVersion: "tekton.dev/v1beta1", Kind: "CustomRun", Name: "run", UID: "cr-uid"}
	if len(rec.owners) != 2 {
		t.Fatalf("want 2 owned requests, got %d", len(rec.owners))
	}
	for _, got := range rec.owners {
		got.Controller, got.BlockOwnerDeletion = nil, nil
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("owner (-want +got):\n%s", d)
		}
	}
	if got := rec.params[0][0].Value.StringVal; got != "main" {
		t.Errorf("resolver param = %q, want the run's param substituted: main", got)
	}
}
