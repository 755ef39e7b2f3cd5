package assemble_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/render"
)

// restrictedExample is the repository's example for a namespace that enforces the
// restricted Pod Security Standard.
const restrictedExample = "../../examples/restricted-namespace.yaml"

// unrestricted has steps that do not meet the restricted profile, and the containers of
// ours and Tekton's a run can have: place-scripts (scripts), Tekton's working-dir init (a
// workingDir under /workspace), a sidecar, and the reporter.
const unrestricted = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: loose}
spec:
  pipelineSpec:
    tasks:
    - name: a
      taskSpec:
        steps:
        - {name: one, image: busybox, workingDir: /workspace/src, script: "echo one"}
        sidecars:
        - {name: helper, image: busybox, command: [sleep, "3600"]}
    - name: b
      runAfter: [a]
      taskSpec:
        steps:
        - name: two
          image: busybox
          command: [id]
          securityContext: {runAsUser: 1000, privileged: false}
`

// withFeatureFlags is Tekton's configuration with the given feature-flags, as the
// controller reads it from the cluster.
func withFeatureFlags(t *testing.T, flags map[string]string) context.Context {
	t.Helper()
	cfg, err := v1alpha1.TektonConfig(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.GetFeatureFlagsConfigName()}, Data: flags})
	if err != nil {
		t.Fatal(err)
	}
	return config.ToContext(context.Background(), cfg)
}

func renderDocs(ctx context.Context, t *testing.T, docs []render.Document) *corev1.Pod {
	t.Helper()
	res, err := render.Render(ctx, render.DefaultOptions(), docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("want one rendered run, got %d (%v)", len(res), res[0].Err)
	}
	return res[0].Output.Pod
}

func renderYAML(ctx context.Context, t *testing.T, src string) *corev1.Pod {
	t.Helper()
	docs, err := render.Parse("run.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return renderDocs(ctx, t, docs)
}

// evaluateRestricted is what the API server's PodSecurity admission decides for p in a
// namespace labelled pod-security.kubernetes.io/enforce: restricted (version latest).
func evaluateRestricted(t *testing.T, p *corev1.Pod) policy.AggregateCheckResult {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	return policy.AggregateCheckResults(ev.EvaluatePod(lv, &p.ObjectMeta, &p.Spec))
}

// ownContainers are the containers a user's Task does not declare: every init
// container (ours, Tekton's place-scripts and working-dir init) and the reporter.
func ownContainers(p *corev1.Pod) []corev1.Container {
	own := append([]corev1.Container{}, p.Spec.InitContainers...)
	for _, c := range p.Spec.Containers {
		if c.Name == plan.ReporterContainer {
			own = append(own, c)
		}
	}
	return own
}

var securityContextOn = map[string]string{"set-security-context": "true"}

// A run whose steps and pod template are restricted passes the restricted profile under
// set-security-context, and only under it: without the flag our containers, like
// Tekton's own init containers, carry no securityContext.
func TestRestrictedExamplePasses(t *testing.T) {
	docs, err := render.ReadFiles(restrictedExample)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		flags    map[string]string
		allowed  bool
		readOnly bool
	}{
		{name: "set-security-context", flags: securityContextOn, allowed: true},
		{name: "read-only root filesystem too", flags: map[string]string{"set-security-context": "true", "set-security-context-read-only-root-filesystem": "true"}, allowed: true, readOnly: true},
		{name: "flag off", flags: nil, allowed: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := renderDocs(withFeatureFlags(t, tc.flags), t, docs)
			got := evaluateRestricted(t, p)
			if got.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v: %s: %s", got.Allowed, tc.allowed, got.ForbiddenReason(), got.ForbiddenDetail())
			}
			if !tc.allowed {
				// The refusal is our containers' (the example's own are restricted).
				if d := got.ForbiddenDetail(); !strings.Contains(d, `"`+assemble.ContainerInit+`"`) || !strings.Contains(d, `"`+plan.ReporterContainer+`"`) {
					t.Errorf("without set-security-context the refusal should name our containers, got %s", d)
				}
				return
			}
			for _, c := range ownContainers(p) {
				if c.SecurityContext == nil {
					t.Fatalf("container %s has no securityContext", c.Name)
				}
				if ro := c.SecurityContext.ReadOnlyRootFilesystem; (ro != nil && *ro) != tc.readOnly {
					t.Errorf("container %s: readOnlyRootFilesystem %v, want %v", c.Name, ro, tc.readOnly)
				}
			}
		})
	}
}

// Under set-security-context our containers are never the cause of a refusal: a pod
// refused for its steps names only them, and our containers alone, with no pod-level
// securityContext to lean on, pass.
func TestOwnContainersNeverRefused(t *testing.T) {
	p := renderYAML(withFeatureFlags(t, securityContextOn), t, unrestricted)
	own := ownContainers(p)
	var names []string
	for _, c := range own {
		names = append(names, c.Name)
		if d := cmp.Diff(pod.LinuxSecurityContext, c.SecurityContext); d != "" {
			t.Errorf("container %s: securityContext is not Tekton's restricted one (-want +got):\n%s", c.Name, d)
		}
	}
	// ContainerInit, place-scripts, Tekton's working-dir init and the reporter.
	if len(own) != 4 {
		t.Fatalf("want 4 containers of ours and Tekton's, got %v", names)
	}

	got := evaluateRestricted(t, p)
	if got.Allowed {
		t.Fatal("the steps are not restricted; the pod should be refused")
	}
	detail := got.ForbiddenDetail()
	for _, n := range names {
		if strings.Contains(detail, `"`+n+`"`) {
			t.Errorf("the refusal names our container %s: %s", n, detail)
		}
	}
	if !strings.Contains(detail, `"step-b-two"`) {
		t.Errorf("the refusal should name the user's step, got %s", detail)
	}

	alone := p.DeepCopy()
	alone.Spec.SecurityContext = nil
	alone.Spec.InitContainers = nil
	alone.Spec.Containers = own
	if got := evaluateRestricted(t, alone); !got.Allowed {
		t.Errorf("our containers alone are refused: %s: %s", got.ForbiddenReason(), got.ForbiddenDetail())
	}
}

// A pod that runs on Windows nodes gets Tekton's Windows context, as Tekton gives its
// init containers.
func TestOwnSecurityContextWindows(t *testing.T) {
	src := strings.Replace(unrestricted, "spec:\n  pipelineSpec:", "spec:\n  taskRunTemplate:\n    podTemplate: {nodeSelector: {kubernetes.io/os: windows}}\n  pipelineSpec:", 1)
	p := renderYAML(withFeatureFlags(t, securityContextOn), t, src)
	for _, c := range ownContainers(p) {
		if c.Name == assemble.ContainerInit || c.Name == plan.ReporterContainer {
			if d := cmp.Diff(pod.WindowsSecurityContext, c.SecurityContext); d != "" {
				t.Errorf("container %s (-want +got):\n%s", c.Name, d)
			}
		}
	}
}

// The user's steps, the pod's securityContext and Tekton's own init containers are
// exactly what Tekton's pod builder makes of each task under set-security-context.
func TestStepsAsTektonUnderSecurityContextFlag(t *testing.T) {
	ctx := withFeatureFlags(t, map[string]string{"set-security-context": "true", "set-security-context-read-only-root-filesystem": "true"})
	docs, err := render.Parse("run.yaml", []byte(unrestricted))
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, render.Document{Source: "sa", Object: &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}})
	ours := renderDocs(ctx, t, docs)
	pr, ok := docs[0].Object.(*v1.PipelineRun)
	if !ok {
		t.Fatalf("%T", docs[0].Object)
	}
	opts := render.DefaultOptions()
	images := opts.Images
	images.EntrypointImage = opts.EntrypointImage
	kube := k8sfake.NewSimpleClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: render.DefaultNamespace}})
	b := pod.Builder{Images: images, KubeClient: kube}
	for _, pt := range pr.Spec.PipelineSpec.Tasks {
		tr := &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: "loose-" + pt.Name, Namespace: render.DefaultNamespace},
			Spec:       v1.TaskRunSpec{ServiceAccountName: "default"},
		}
		tekton, err := b.Build(ctx, tr, pt.TaskSpec.TaskSpec)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tekton.Spec.SecurityContext, ours.Spec.SecurityContext); d != "" {
			t.Errorf("pod securityContext (-tekton +ours):\n%s", d)
		}
		for i, s := range pt.TaskSpec.Steps {
			got := container(t, ours, "step-"+pt.Name+"-"+s.Name)
			if d := cmp.Diff(tekton.Spec.Containers[i].SecurityContext, got.SecurityContext); d != "" {
				t.Errorf("task %s step %s securityContext (-tekton +ours):\n%s", pt.Name, s.Name, d)
			}
		}
		for _, tc := range tekton.Spec.InitContainers {
			if tc.Name == pod.ContainerNamePrepare {
				continue
			}
			found := false
			for _, oc := range ours.Spec.InitContainers {
				if strings.HasSuffix(oc.Name, tc.Name) {
					found = true
					if d := cmp.Diff(tc.SecurityContext, oc.SecurityContext); d != "" {
						t.Errorf("init container %s securityContext (-tekton +ours):\n%s", oc.Name, d)
					}
				}
			}
			if !found {
				t.Errorf("Tekton's init container %s of task %s is not in the pod", tc.Name, pt.Name)
			}
		}
	}
}
