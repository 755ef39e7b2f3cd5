package prepare_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	remoteresource "github.com/tektoncd/pipeline/pkg/remoteresolution/resource"
	remoteresolution "github.com/tektoncd/pipeline/test/remoteresolution"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile/compiletest"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
	"github.com/pipelineinpod/pipelineinpod/pkg/render"
)

const enumRun = `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: enum, namespace: ns}
spec:
  params: [{name: env, value: dev}]
  pipelineSpec:
    params: [{name: env, enum: [dev, prod]}]
    tasks:
      - name: a
        params: [{name: env, value: $(params.env)}]
        taskSpec:
          params: [{name: env}]
          steps: [{name: s, image: busybox, script: echo $(params.env)}]
`

const celRun = `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: cel, namespace: ns}
spec:
  pipelineSpec:
    tasks:
      - name: a
        when: [{cel: "'yes' == 'yes'"}]
        taskSpec:
          steps: [{name: s, image: busybox, script: echo a}]
`

const nestedRun = `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: nested, namespace: ns}
spec:
  pipelineSpec:
    tasks:
      - name: inner
        pipelineSpec:
          tasks:
            - name: a
              taskSpec:
                steps: [{name: s, image: busybox, script: echo a}]
`

const plainRun = `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: plain, namespace: ns}
spec:
  pipelineSpec:
    tasks:
      - name: a
        taskSpec:
          results: [{name: out}]
          steps: [{name: s, image: busybox, script: echo hi > $(results.out.path)}]
`

const tasksTimeoutRun = `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: timeouts, namespace: ns}
spec:
  timeouts: {tasks: 1h}
  pipelineSpec:
    tasks:
      - name: a
        taskSpec:
          steps: [{name: s, image: busybox, script: echo a}]
`

const sidecarRun = `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: sidecar, namespace: ns}
spec:
  pipelineSpec:
    tasks:
      - name: a
        taskSpec:
          sidecars: [{name: db, image: busybox, command: [sleep, "100"]}]
          steps: [{name: s, image: busybox, script: echo a}]
`

// prepareWith prepares the one run of doc under Tekton's configuration made of cms, and
// assembles its pod.
func prepareWith(t *testing.T, doc string, cms ...*corev1.ConfigMap) (*prepare.Prepared, *assemble.Output, error) {
	t.Helper()
	docs, err := render.Parse("run.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := render.Runs(docs)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs %v: %v", runs, err)
	}
	ctx := compiletest.ContextWith(t, cms...)
	s := &prepare.Stages{
		Images:          pipeline.Images{ShellImage: "busybox", WorkingDirInitImage: "wd"},
		EntrypointImage: "pip-entrypoint",
		KubeClient: k8sfake.NewSimpleClientset(
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "ns"}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder", Namespace: "ns"}},
		),
		PipelineClient: tektonfake.NewSimpleClientset(),
	}
	p, err := s.Prepare(ctx, runs[0].CustomRun)
	if err != nil {
		return nil, nil, err
	}
	out, err := p.Assemble(ctx, 0, nil)
	return p, out, err
}

// The cluster's Tekton configuration decides, as for a PipelineRun, whether a run is
// accepted (feature flags) and how it is defaulted (config-defaults): the same run is
// refused or accepted as the ConfigMaps change.
func TestTektonConfigDecides(t *testing.T) {
	ff, defaults := compiletest.FeatureFlags, compiletest.Defaults
	for _, c := range []struct {
		name string
		doc  string
		cms  []*corev1.ConfigMap
		// refused is in the refusal; "" accepts the run.
		refused string
		// notRefusedFor: the run may be refused, but not for this (a flag that is on).
		notRefusedFor string
		check         func(t *testing.T, p *prepare.Prepared, out *assemble.Output)
	}{{
		name: "param enum, Tekton's default flags", doc: enumRun,
		refused: "feature flag `enable-param-enum` should be set to true",
	}, {
		name: "param enum, enable-param-enum", doc: enumRun, cms: []*corev1.ConfigMap{ff(map[string]string{"enable-param-enum": "true"})},
		check: func(t *testing.T, p *prepare.Prepared, _ *assemble.Output) {
			if got := p.TaskRuns[0].Spec.Params; len(got) != 1 || got[0].Value.StringVal != "dev" {
				t.Errorf("params %v, want env=dev", got)
			}
		},
	}, {
		name: "CEL in when, Tekton's default flags", doc: celRun,
		refused: "feature flag enable-cel-in-whenexpression should be set to true",
	}, {
		name: "CEL in when, enable-cel-in-whenexpression", doc: celRun, cms: []*corev1.ConfigMap{ff(map[string]string{"enable-cel-in-whenexpression": "true"})},
		notRefusedFor: "enable-cel-in-whenexpression",
	}, {
		name: "pipelines in pipelines, beta API fields (Tekton's default)", doc: nestedRun,
		refused: `pipelineSpec requires "enable-api-fields" feature gate to be "alpha" but it is "beta"`,
	}, {
		name: "pipelines in pipelines, stable API fields", doc: nestedRun, cms: []*corev1.ConfigMap{ff(map[string]string{"enable-api-fields": "stable"})},
		refused: `feature gate to be "alpha" but it is "stable"`,
	}, {
		name: "pipelines in pipelines, alpha API fields", doc: nestedRun, cms: []*corev1.ConfigMap{ff(map[string]string{"enable-api-fields": "alpha"})},
		check: func(t *testing.T, p *prepare.Prepared, _ *assemble.Output) {
			if len(p.TaskRuns) != 1 {
				t.Errorf("%d TaskRuns, want the inner pipeline's one", len(p.TaskRuns))
			}
		},
	}, {
		name: "inline taskSpec, disable-inline-spec: pipeline", doc: plainRun, cms: []*corev1.ConfigMap{ff(map[string]string{"disable-inline-spec": "pipeline"})},
		refused: "must not set the field(s): tasks[0].taskSpec",
	}, {
		// What Tekton's webhook checks on a PipelineRun holds for the run's spec too.
		name: "inline pipelineSpec, disable-inline-spec: pipelinerun", doc: plainRun, cms: []*corev1.ConfigMap{ff(map[string]string{"disable-inline-spec": "pipelinerun"})},
		refused: "spec.customSpec.spec: invalid as a PipelineRun: must not set the field(s): pipelineSpec",
	}, {
		name: "tasks timeout over config-defaults' pipeline timeout", doc: tasksTimeoutRun,
		cms:     []*corev1.ConfigMap{defaults(map[string]string{"default-timeout-minutes": "30"})},
		refused: "1h0m0s should be <= pipeline duration: timeouts.tasks",
	}, {
		name: "tasks timeout within Tekton's default pipeline timeout", doc: tasksTimeoutRun,
	}, {
		name: "Tekton's defaults", doc: plainRun,
		check: func(t *testing.T, p *prepare.Prepared, out *assemble.Output) {
			if got := []string{p.TaskRuns[0].Spec.ServiceAccountName, out.Pod.Spec.ServiceAccountName}; !cmp.Equal(got, []string{"default", "default"}) {
				t.Errorf("service accounts (TaskRun, pod) %v, want Tekton's default", got)
			}
			if out.Pod.Spec.NodeSelector != nil {
				t.Errorf("nodeSelector %v, want none", out.Pod.Spec.NodeSelector)
			}
		},
	}, {
		name: "config-defaults: service account and pod template",
		doc:  plainRun,
		cms: []*corev1.ConfigMap{defaults(map[string]string{
			"default-service-account": "builder",
			"default-pod-template":    "nodeSelector:\n  disk: ssd\n",
		})},
		check: func(t *testing.T, p *prepare.Prepared, out *assemble.Output) {
			if got := []string{p.TaskRuns[0].Spec.ServiceAccountName, out.Pod.Spec.ServiceAccountName}; !cmp.Equal(got, []string{"builder", "builder"}) {
				t.Errorf("service accounts (TaskRun, pod) %v, want config-defaults' builder", got)
			}
			if d := cmp.Diff(map[string]string{"disk": "ssd"}, out.Pod.Spec.NodeSelector); d != "" {
				t.Errorf("nodeSelector (-want +got):\n%s", d)
			}
		},
	}, {
		// Steps and sidecars asking for nothing get config-defaults' resources, by
		// name prefix, else "default", as Tekton's pod builder gives them: the pod is
		// sized for them.
		name: "config-defaults: default container resources",
		doc:  sidecarRun,
		cms: []*corev1.ConfigMap{defaults(map[string]string{
			"default-container-resource-requirements": "default:\n  requests:\n    memory: 100Mi\nprefix-sidecar:\n  requests:\n    cpu: 50m\n",
		})},
		check: func(t *testing.T, _ *prepare.Prepared, out *assemble.Output) {
			want := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("100Mi")}
			if d := cmp.Diff(want, out.Resources.Peak); d != "" {
				t.Errorf("peak demand (-want +got):\n%s", d)
			}
		},
	}, {
		name: "Tekton's defaults: no container resources", doc: sidecarRun,
		check: func(t *testing.T, _ *prepare.Prepared, out *assemble.Output) {
			if len(out.Resources.Peak) != 0 {
				t.Errorf("peak demand %v, want none", out.Resources.Peak)
			}
		},
	}, {
		// Results travel through the reporter's log whatever results-from says: no
		// Tekton results sidecar, whose image the controller does not deploy.
		name: "results-from: sidecar-logs", doc: plainRun, cms: []*corev1.ConfigMap{ff(map[string]string{"results-from": "sidecar-logs"})},
		check: func(t *testing.T, _ *prepare.Prepared, out *assemble.Output) {
			for _, ctr := range out.Pod.Spec.Containers {
				if strings.Contains(ctr.Name, pipeline.ReservedResultsSidecarName) || ctr.Image == "" {
					t.Errorf("container %q (image %q) in the pod", ctr.Name, ctr.Image)
				}
			}
		},
	}, {
		name: "set-security-context", doc: plainRun, cms: []*corev1.ConfigMap{ff(map[string]string{"set-security-context": "true"})},
		check: func(t *testing.T, _ *prepare.Prepared, out *assemble.Output) {
			restricted := 0
			for _, ctr := range out.Pod.Spec.InitContainers {
				if sc := ctr.SecurityContext; sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot {
					restricted++
				}
			}
			if restricted == 0 {
				t.Error("no init container with Tekton's restricted security context")
			}
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			p, out, err := prepareWith(t, c.doc, c.cms...)
			var f *prepare.Failure
			switch {
			case c.notRefusedFor != "":
				if err != nil && strings.Contains(err.Error(), c.notRefusedFor) {
					t.Errorf("refused for %s, which is on: %v", c.notRefusedFor, err)
				}
			case c.refused != "":
				if !errors.As(err, &f) || !strings.Contains(err.Error(), c.refused) {
					t.Errorf("err = %v, want a failure with %q", err, c.refused)
				}
			case err != nil:
				t.Fatalf("refused: %v", err)
			case c.check != nil:
				c.check(t, p, out)
			}
		})
	}
}

// Without a security context the place-scripts container keeps running as its image's
// user: set-security-context, not PipelineInPod, decides.
func TestNoSecurityContextByDefault(t *testing.T) {
	_, out, err := prepareWith(t, plainRun)
	if err != nil {
		t.Fatal(err)
	}
	for _, ctr := range out.Pod.Spec.InitContainers {
		if ctr.SecurityContext != nil {
			t.Errorf("init container %q has a security context %+v", ctr.Name, ctr.SecurityContext)
		}
	}
}

// A Task that fails verification fails the run with Tekton's reason.
func TestVerificationFailureReason(t *testing.T) {
	cr := &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns"},
		Spec: v1beta1.CustomRunSpec{CustomRef: &v1beta1.TaskRef{APIVersion: "tekton.dev/v1alpha1", Kind: "PipelineInPod", ResolverRef: v1beta1.ResolverRef{
			Resolver: "git",
		}}},
	}
	s := &prepare.Stages{
		KubeClient: k8sfake.NewSimpleClientset(), PipelineClient: tektonfake.NewSimpleClientset(),
		Requester: servedPipeline(t),
	}
	ctx := compiletest.ContextWith(t, compiletest.FeatureFlags(map[string]string{"trusted-resources-verification-no-match-policy": "fail"}))
	_, err := s.Prepare(ctx, cr)
	var f *prepare.Failure
	if !errors.As(err, &f) || f.Reason != string(v1.PipelineRunReasonResourceVerificationFailed) || !strings.Contains(err.Error(), "failed signature verification") {
		t.Errorf("err = %#v, want a %s failure", err, v1.PipelineRunReasonResourceVerificationFailed)
	}
}

// servedPipeline is a requester whose resolutions answer an unsigned Pipeline.
func servedPipeline(t *testing.T) remoteresource.Requester {
	t.Helper()
	data, err := yaml.Marshal(&v1.Pipeline{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{Name: "release"},
		Spec: v1.PipelineSpec{Tasks: []v1.PipelineTask{{
			Name: "a", TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo a"}}}},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return remoteresolution.NewRequester(remoteresolution.NewResolvedResource(data, nil, &v1.RefSource{URI: "https://git.example.com/org/catalog.git"}, nil), nil, remoteresource.ResolverPayload{})
}
