package resolve

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tektonv1alpha1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	remoteresource "github.com/tektoncd/pipeline/pkg/remoteresolution/resource"
	"github.com/tektoncd/pipeline/pkg/trustedresources"
	tektontest "github.com/tektoncd/pipeline/test"
	remoteresolution "github.com/tektoncd/pipeline/test/remoteresolution"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	pipinpod "github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
)

// source is where the resolver says the resources come from: what policies match.
const source = "https://git.example.com/org/catalog.git"

// policy is a VerificationPolicy of the run's namespace for resources from pattern,
// trusting pub.
func policy(name, pattern string, pub []byte, mode tektonv1alpha1.ModeType) *tektonv1alpha1.VerificationPolicy {
	return &tektonv1alpha1.VerificationPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec: tektonv1alpha1.VerificationPolicySpec{
			Resources:   []tektonv1alpha1.ResourcePattern{{Pattern: pattern}},
			Authorities: []tektonv1alpha1.Authority{{Name: "key", Key: &tektonv1alpha1.KeyRef{Data: string(pub), HashAlgorithm: "sha256"}}},
			Mode:        mode,
		},
	}
}

// served is a requester whose every resolution answers obj, from source.
func served(t *testing.T, obj any) remoteresource.Requester {
	t.Helper()
	data, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return remoteresolution.NewRequester(remoteresolution.NewResolvedResource(data, nil, &v1.RefSource{URI: source}, nil), nil, remoteresource.ResolverPayload{})
}

func remoteTask(ctx context.Context, t *testing.T, signer signature.Signer) *v1.Task {
	t.Helper()
	task := &v1.Task{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "Task"},
		ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: "ns"},
		Spec:       v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo hi"}}},
	}
	// Tekton verifies what it fetched once defaulted: sign that.
	task.SetDefaults(ctx)
	if signer == nil {
		return task
	}
	signed, err := tektontest.GetSignedV1Task(task, signer, task.Name)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func verifiedRun() *v1beta1.CustomRun {
	return &v1beta1.CustomRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1beta1", Kind: "CustomRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns", UID: "cr-uid"},
		Spec: v1beta1.CustomRunSpec{CustomRef: &v1beta1.TaskRef{APIVersion: pipinpod.APIVersion, Kind: pipinpod.Kind, ResolverRef: v1beta1.ResolverRef{
			Resolver: "git",
		}}},
	}
}

// A Task fetched by a resolver is verified as Tekton verifies a PipelineRun's: against
// the policies of the run's namespace, under the no-match policy of Tekton's feature
// flags. A failure refuses the Task (a VerificationError, which fails the run with
// Tekton's reason); a warning or a pass is the TrustedResourcesVerified condition.
func TestRemoteTaskIsVerified(t *testing.T) {
	signer, _, pub, err := tektontest.GenerateKeys(elliptic.P256(), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _, err := tektontest.GenerateKeys(elliptic.P256(), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	matching := policy("trust-catalog", source, pub, tektonv1alpha1.ModeEnforce)
	elsewhere := policy("trust-elsewhere", "https://git.example.com/other/.*", pub, tektonv1alpha1.ModeEnforce)
	warnOnly := policy("warn-catalog", source, pub, tektonv1alpha1.ModeWarn)
	for _, c := range []struct {
		name     string
		noMatch  string // trusted-resources-verification-no-match-policy; "": Tekton's default
		policies []*tektonv1alpha1.VerificationPolicy
		signer   signature.Signer
		// wantErr is in the refusal's message; "" accepts the Task.
		wantErr  string
		verified *apis.Condition
	}{{
		name: "no policy, default (ignore)", signer: nil,
	}, {
		name: "signed by the trusted key", policies: []*tektonv1alpha1.VerificationPolicy{matching}, signer: signer,
		verified: &apis.Condition{Type: trustedresources.ConditionTrustedResourcesVerified, Status: corev1.ConditionTrue},
	}, {
		name: "unsigned, a policy requires a signature", policies: []*tektonv1alpha1.VerificationPolicy{matching},
		wantErr: "customRun ns/run referred resource t failed signature verification",
	}, {
		name: "signed by another key", policies: []*tektonv1alpha1.VerificationPolicy{matching}, signer: other,
		wantErr: "failed signature verification",
	}, {
		name: "unsigned, a warn-mode policy", policies: []*tektonv1alpha1.VerificationPolicy{warnOnly},
		verified: &apis.Condition{Type: trustedresources.ConditionTrustedResourcesVerified, Status: corev1.ConditionFalse},
	}, {
		name: "no matching policy, ignore", noMatch: config.IgnoreNoMatchPolicy, policies: []*tektonv1alpha1.VerificationPolicy{elsewhere},
	}, {
		name: "no matching policy, warn", noMatch: config.WarnNoMatchPolicy, policies: []*tektonv1alpha1.VerificationPolicy{elsewhere},
		verified: &apis.Condition{Type: trustedresources.ConditionTrustedResourcesVerified, Status: corev1.ConditionFalse},
	}, {
		name: "no matching policy, fail", noMatch: config.FailNoMatchPolicy, policies: []*tektonv1alpha1.VerificationPolicy{elsewhere}, signer: signer,
		wantErr: "no matching policies are found",
	}, {
		name: "no policy at all, fail", noMatch: config.FailNoMatchPolicy, signer: signer,
		wantErr: "no matching policies are found",
	}} {
		t.Run(c.name, func(t *testing.T) {
			flags := map[string]string{}
			if c.noMatch != "" {
				flags["trusted-resources-verification-no-match-policy"] = c.noMatch
			}
			ctx := withFeatureFlags(t, flags)
			cr := verifiedRun()
			r := NewClientResolver(k8sfake.NewSimpleClientset(), tektonfake.NewSimpleClientset(), served(t, remoteTask(ctx, t, c.signer)), cr, c.policies)
			task, err := r.Task(ctx, v1.PipelineTask{Name: "t", TaskRef: &v1.TaskRef{ResolverRef: v1.ResolverRef{Resolver: "git"}}})
			var verr *VerificationError
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantErr == "" && task.Name != "build":
				t.Errorf("resolved Task %q, want build", task.Name)
			case c.wantErr != "" && (!errors.As(err, &verr) || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("err = %v, want a VerificationError with %q", err, c.wantErr)
			}
			got := r.Verified()
			if c.wantErr != "" {
				// A refusal records the failed verification too.
				c.verified = &apis.Condition{Type: trustedresources.ConditionTrustedResourcesVerified, Status: corev1.ConditionFalse}
			}
			if d := cmp.Diff(c.verified, got, cmpopts.IgnoreFields(apis.Condition{}, "Message")); d != "" {
				t.Errorf("Verified (-want +got):\n%s", d)
			}
			if got != nil && got.Status == corev1.ConditionFalse && got.Message == "" {
				t.Error("a failed or warned verification without its message")
			}
		})
	}
}

// The run's Pipeline from a resolver is verified too: wrapping a PipelineRun in
// PipelineInPod never bypasses a signed-resource requirement.
func TestRemotePipelineIsVerified(t *testing.T) {
	signer, _, pub, err := tektontest.GenerateKeys(elliptic.P256(), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	ctx := withFeatureFlags(t, nil)
	p := &v1.Pipeline{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{Name: "release", Namespace: "ns"},
		Spec: v1.PipelineSpec{Tasks: []v1.PipelineTask{{
			Name: "a", TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo a"}}}},
		}}},
	}
	p.SetDefaults(ctx)
	signed, err := tektontest.GetSignedV1Pipeline(p, signer, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	policies := []*tektonv1alpha1.VerificationPolicy{policy("trust-catalog", source, pub, tektonv1alpha1.ModeEnforce)}
	for _, c := range []struct {
		name    string
		served  *v1.Pipeline
		wantErr string
	}{
		{"signed", signed, ""},
		{"unsigned", p, "customRun ns/run referred resource release failed signature verification"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cr := verifiedRun()
			r := NewClientResolver(k8sfake.NewSimpleClientset(), tektonfake.NewSimpleClientset(), served(t, c.served), cr, policies)
			resolved, err := Resolve(ctx, r, cr)
			var verr *VerificationError
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantErr == "" && resolved.PipelineName != "release":
				t.Errorf("resolved %q", resolved.PipelineName)
			case c.wantErr != "" && (!errors.As(err, &verr) || !strings.Contains(err.Error(), c.wantErr) || !strings.HasPrefix(err.Error(), "spec.customRef")):
				t.Errorf("err = %v, want a VerificationError naming spec.customRef and %q", err, c.wantErr)
			}
		})
	}
}

// As in Tekton, a Task of the run's own namespace is not verified (only what a resolver
// fetches is): a no-match policy of fail does not refuse it.
func TestLocalTaskIsNotVerified(t *testing.T) {
	ctx := withFeatureFlags(t, map[string]string{"trusted-resources-verification-no-match-policy": config.FailNoMatchPolicy})
	local := remoteTask(ctx, t, nil)
	r := NewClientResolver(k8sfake.NewSimpleClientset(), tektonfake.NewSimpleClientset(local), nil, verifiedRun(), nil)
	if _, err := r.Task(ctx, v1.PipelineTask{Name: "t", TaskRef: &v1.TaskRef{Name: "build"}}); err != nil {
		t.Fatalf("a local Task: %v", err)
	}
	if got := r.Verified(); got != nil {
		t.Errorf("Verified = %v, want none", got)
	}
}
