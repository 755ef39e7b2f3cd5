//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektontest "github.com/tektoncd/pipeline/test"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

// These tests need Tekton's resolvers running in the cluster (hack/local-cluster/tekton-resolvers.sh, run by
// tekton-up.sh): the cluster, bundles and git resolvers answer the ResolutionRequests the controller makes.

// shoutTask is the Task every remote Pipeline below runs; its marker shows that the child TaskRun ran the
// remote Task's own steps.
const (
	shoutMarker = "FROM A REMOTE TASK"
	shoutTask   = `
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: shout}
spec:
  params: [{name: who}]
  results: [{name: text}]
  steps:
  - name: shout
    image: ` + busybox + `
    script: |
      printf '%s' "HELLO $(params.who) ` + shoutMarker + `" > $(results.text.path)
`
)

// remoteGreet is a Pipeline named remote-greet whose one task names Task shout through taskRef (YAML
// flow mapping): the Pipeline's params are the run's who and extra (the taskRef's params use them, so
// a taskRef is substituted as Tekton substitutes it before resolving).
func remoteGreet(extra []string, taskRef string) string {
	params := "[{name: who}"
	for _, p := range extra {
		params += ", {name: " + p + "}"
	}
	return `
apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: remote-greet}
spec:
  params: ` + params + `]
  results: [{name: greeting, value: $(tasks.greet.results.text)}]
  tasks:
  - name: greet
    taskRef: ` + taskRef + `
    params: [{name: who, value: $(params.who)}]
`
}

func mustDecode[T any](t *testing.T, doc string) *T {
	t.Helper()
	var o T
	if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
		t.Fatalf("decoding %T: %v\n%s", o, err, doc)
	}
	return &o
}

// create creates Pipelines and Tasks in namespace ns.
func (e *env) create(ns string, objs ...k8sruntime.Object) {
	e.t.Helper()
	for _, o := range objs {
		if ok, err := clients.Create(e.ctx, ns, o); err != nil || !ok {
			e.t.Fatalf("creating a %T in %s: %v (created: %v)", o, ns, err, ok)
		}
	}
}

// resolverCustomRun is a CustomRun whose customRef names its Pipeline through a resolver.
func resolverCustomRun(generateName, resolver string, refParams map[string]string, params ...v1beta1.Param) *v1beta1.CustomRun {
	cr := &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: generateName},
		Spec: v1beta1.CustomRunSpec{
			CustomRef: &v1beta1.TaskRef{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind,
				ResolverRef: v1beta1.ResolverRef{Resolver: v1beta1.ResolverName(resolver)}},
			Params: params,
		},
	}
	for _, k := range slices.Sorted(maps.Keys(refParams)) {
		cr.Spec.CustomRef.Params = append(cr.Spec.CustomRef.Params, stringParam(k, refParams[k]))
	}
	return cr
}

// checkRemoteGreet checks a run of remote-greet that succeeded: the greeting comes from Task shout, and the
// child TaskRun carries that Task (its name and its steps).
func (e *env) checkRemoteGreet(cr *v1beta1.CustomRun, who string) {
	e.t.Helper()
	e.checkSucceeded(cr)
	text := "HELLO " + who + " " + shoutMarker
	e.checkResults(cr, map[string]string{"greeting": text})
	e.checkSucceededChildren(cr, map[string]wantTask{"greet": {memberOf: "tasks", steps: []string{"shout"}, results: map[string]string{"text": text}}})
	tr := e.childTaskRuns(cr.Name)["greet"]
	if tr == nil {
		e.t.Fatalf("CustomRun %s: no child TaskRun for greet", cr.Name)
	}
	if got := tr.Labels[pipeline.TaskLabelKey]; got != "shout" {
		e.t.Errorf("TaskRun %s: label %s = %q, want the remote Task's name shout", tr.Name, pipeline.TaskLabelKey, got)
	}
	if got := tr.Labels[pipeline.PipelineLabelKey]; got != "remote-greet" {
		e.t.Errorf("TaskRun %s: label %s = %q, want the remote Pipeline's name remote-greet", tr.Name, pipeline.PipelineLabelKey, got)
	}
	if tr.Spec.TaskSpec == nil || len(tr.Spec.TaskSpec.Steps) != 1 || !strings.Contains(tr.Spec.TaskSpec.Steps[0].Script, shoutMarker) {
		e.t.Errorf("TaskRun %s: spec.taskSpec %+v, want Task shout's one step", tr.Name, tr.Spec.TaskSpec)
	}
}

// The cluster resolver: a PipelineRun's PipelineInPod task names a Pipeline of another namespace by
// `resolver: cluster`, and that Pipeline's task names a Task of that namespace the same way. The
// namespace reaches both refs through params ($(params.other) in the PipelineRun's taskRef, then the
// Pipeline's $(params.task-namespace)), substituted as Tekton substitutes them before resolving.
func TestResolverCluster(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t).ns
	e.create(other,
		mustDecode[v1.Task](t, shoutTask),
		mustDecode[v1.Pipeline](t, remoteGreet([]string{"task-namespace"},
			`{resolver: cluster, params: [{name: kind, value: task}, {name: name, value: shout}, {name: namespace, value: $(params.task-namespace)}]}`)))

	pr := mustDecode[v1.PipelineRun](t, `
metadata: {generateName: cluster-resolver-}
spec:
  params: [{name: other, value: `+other+`}]
  pipelineSpec:
    params: [{name: other}]
    tasks:
    - name: in-one-pod
      taskRef:
        apiVersion: `+v1alpha1.APIVersion+`
        kind: `+v1alpha1.Kind+`
        resolver: cluster
        params:
        - {name: kind, value: pipeline}
        - {name: name, value: remote-greet}
        - {name: namespace, value: $(params.other)}
      params:
      - {name: who, value: cluster}
      - {name: task-namespace, value: $(params.other)}
`)
	pr, err := clients.Tekton.TektonV1().PipelineRuns(e.ns).Create(e.ctx, pr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating PipelineRun: %v", err)
	}
	t.Logf("PipelineRun %s", pr.Name)
	start := time.Now()
	pr = e.waitPipelineRunDone(pr.Name, runLimit)
	t.Logf("PipelineRun %s done after %s", pr.Name, time.Since(start).Round(time.Millisecond))
	if c := pr.Status.GetCondition(apis.ConditionSucceeded); !c.IsTrue() {
		t.Errorf("PipelineRun %s: want Succeeded, got %s", pr.Name, cluster.ConditionString(c))
	}
	cr := e.customRunOf(pr)
	if got := cr.Spec.CustomRef.Params; len(got) != 3 || got[2].Value.StringVal != other {
		t.Errorf("CustomRun %s: customRef params %v, want Tekton to have substituted namespace %s", cr.Name, got, other)
	}
	e.checkRemoteGreet(cr, "cluster")
}

// registryForPods is the local registry as the cluster's pods reach it (env.sh: PIP_POD_REGISTRY), and
// registryForHost as this process does (PIP_REGISTRY).
func registryForPods() string { return envOr("PIP_POD_REGISTRY", "10.244.0.1:5000") }
func registryForHost() string { return envOr("PIP_REGISTRY", "127.0.0.1:5000") }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// The bundles resolver: a Pipeline and its Task packed as a Tekton bundle (one layer per object, with
// Tekton's annotations: tektontest.CreateImage) pushed to the local registry. The resolver's pod pulls
// it from there itself (go-containerregistry, not containerd), at the registry's address for pods.
func TestResolverBundles(t *testing.T) {
	e := newEnv(t)
	repo := "pipelineinpod-e2e/" + e.ns
	task := mustDecode[v1.Task](t, shoutTask)
	p := mustDecode[v1.Pipeline](t, remoteGreet([]string{"bundle"},
		`{resolver: bundles, params: [{name: bundle, value: $(params.bundle)}, {name: name, value: shout}, {name: kind, value: task}]}`))
	pushed, err := tektontest.CreateImage(registryForHost()+"/"+repo+":bundle", p, task)
	if err != nil {
		t.Fatalf("pushing the bundle: %v", err)
	}
	t.Cleanup(func() {
		if ref, err := name.ParseReference(pushed); err == nil {
			if err := remote.Delete(ref); err != nil {
				t.Logf("deleting bundle %s: %v", pushed, err)
			}
		}
	})
	digest := pushed[strings.LastIndex(pushed, "@")+1:]
	bundle := registryForPods() + "/" + repo + "@" + digest
	t.Logf("bundle %s (pushed as %s)", bundle, pushed)

	cr := e.createCustomRun(resolverCustomRun("bundles-resolver-", "bundles",
		map[string]string{"bundle": "$(params.bundle)", "name": "remote-greet", "kind": "pipeline"},
		stringParam("who", "bundles"), stringParam("bundle", bundle)))
	cr, took := e.waitCustomRunDone(cr.Name, runLimit)
	t.Logf("CustomRun %s done after %s", cr.Name, took.Round(time.Millisecond))
	e.checkRemoteGreet(cr, "bundles")
}

// gitImage has git (and sh): the resolvers' base image, which the registry serves.
func gitImage() string { return envOr("PIP_GIT_IMAGE", "ghcr.io/tektoncd/plumbing/tini-git:local") }

// gitServer runs `git daemon` in a pod of the namespace, serving repository catalog whose branch e2e holds
// files (path -> content) and whose default branch main does not; it returns the repository's git:// URL
// (the pod's IP: the cluster has no DNS and no kube-proxy).
func (e *env) gitServer(files map[string]string) string {
	e.t.Helper()
	script := `set -e
export HOME=/srv GIT_AUTHOR_NAME=e2e GIT_AUTHOR_EMAIL=e2e@example.invalid GIT_COMMITTER_NAME=e2e GIT_COMMITTER_EMAIL=e2e@example.invalid
git init -q -b main /srv/catalog
cd /srv/catalog
echo "files are on branch e2e" > README
git add README
git commit -qm main
git checkout -qb e2e
`
	var env []corev1.EnvVar
	for i, path := range slices.Sorted(maps.Keys(files)) {
		v := fmt.Sprintf("FILE_%d", i)
		env = append(env, corev1.EnvVar{Name: v, Value: files[path]})
		script += fmt.Sprintf("mkdir -p \"$(dirname %s)\"\nprintf '%%s\\n' \"$%s\" > %s\n", path, v, path)
	}
	script += `git add .
git commit -qm e2e
git checkout -q main
exec git daemon --export-all --base-path=/srv --reuseaddr --listen=0.0.0.0 --port=9418 /srv
`
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "git-server"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(65532)), RunAsGroup: ptr.To(int64(65532))},
			Containers: []corev1.Container{{
				Name: "git", Image: gitImage(), Command: []string{"sh", "-c", script}, Env: env,
				Ports:          []corev1.ContainerPort{{ContainerPort: 9418}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9418)}}, PeriodSeconds: 1},
				VolumeMounts:   []corev1.VolumeMount{{Name: "srv", MountPath: "/srv"}},
			}},
			Volumes: []corev1.Volume{{Name: "srv", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	if _, err := clients.Kube.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("creating the git server: %v", err)
	}
	var ip string
	e.poll(2*time.Minute, "the git server to be ready", func() (bool, string) {
		p, err := clients.Kube.CoreV1().Pods(e.ns).Get(e.ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.PodIP != "" {
				ip = p.Status.PodIP
				return true, ""
			}
		}
		return false, fmt.Sprintf("phase %s %v", p.Status.Phase, p.Status.ContainerStatuses)
	})
	return "git://" + ip + "/catalog"
}

// The git resolver: a Pipeline and its Task in a git repository served in the cluster (git daemon in a
// pod), resolved by url, revision (a branch other than the default one) and pathInRepo. The resolver
// clones with the git binary of its image.
func TestResolverGit(t *testing.T) {
	e := newEnv(t)
	url := e.gitServer(map[string]string{
		"tasks/shout.yaml": shoutTask,
		"pipelines/remote-greet.yaml": remoteGreet([]string{"repo", "revision"},
			`{resolver: git, params: [{name: url, value: $(params.repo)}, {name: revision, value: $(params.revision)}, {name: pathInRepo, value: tasks/shout.yaml}]}`),
	})
	t.Logf("git repository %s", url)
	cr := e.createCustomRun(resolverCustomRun("git-resolver-", "git",
		map[string]string{"url": url, "revision": "e2e", "pathInRepo": "pipelines/remote-greet.yaml"},
		stringParam("who", "git"), stringParam("repo", url), stringParam("revision", "e2e")))
	cr, took := e.waitCustomRunDone(cr.Name, runLimit)
	t.Logf("CustomRun %s done after %s", cr.Name, took.Round(time.Millisecond))
	e.checkRemoteGreet(cr, "git")
}

// A resolver's error ends the run as Tekton ends a PipelineRun whose Pipeline the same resolver cannot
// find: the same reason, and a message that carries the resolver's own (the ResolutionRequest's).
func TestResolverError(t *testing.T) {
	e := newEnv(t)
	refParams := map[string]string{"kind": "pipeline", "name": "no-such-pipeline", "namespace": e.ns}
	cr := e.createCustomRun(resolverCustomRun("missing-", "cluster", refParams))

	// Tekton's own verdict on the same ref.
	tektonRun := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "missing-tekton-"},
		Spec:       v1.PipelineRunSpec{PipelineRef: &v1.PipelineRef{ResolverRef: v1.ResolverRef{Resolver: "cluster"}}},
	}
	for _, k := range slices.Sorted(maps.Keys(refParams)) {
		tektonRun.Spec.PipelineRef.Params = append(tektonRun.Spec.PipelineRef.Params, v1.Param{Name: k, Value: *v1.NewStructuredValues(refParams[k])})
	}
	tektonRun, err := clients.Tekton.TektonV1().PipelineRuns(e.ns).Create(e.ctx, tektonRun, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating PipelineRun: %v", err)
	}

	cr, took := e.waitCustomRunDone(cr.Name, runLimit)
	t.Logf("CustomRun %s done after %s: %s", cr.Name, took.Round(time.Millisecond), cluster.ConditionString(cr.Status.GetCondition(apis.ConditionSucceeded)))
	tektonRun = e.waitPipelineRunDone(tektonRun.Name, runLimit)
	want := tektonRun.Status.GetCondition(apis.ConditionSucceeded)
	t.Logf("Tekton's PipelineRun %s: %s", tektonRun.Name, cluster.ConditionString(want))
	if want.Reason != v1.PipelineRunReasonCouldntGetPipeline.String() {
		t.Fatalf("Tekton's PipelineRun %s: reason %q, want %q (did the cluster resolver run?)", tektonRun.Name, want.Reason, v1.PipelineRunReasonCouldntGetPipeline)
	}
	got := cr.Status.GetCondition(apis.ConditionSucceeded)
	if !got.IsFalse() || got.Reason != want.Reason {
		t.Errorf("CustomRun %s: %s, want False with Tekton's reason %q", cr.Name, cluster.ConditionString(got), want.Reason)
	}
	// The resolver's words, as both runs report them: what follows the request's name.
	const notFound = `pipelines.tekton.dev "no-such-pipeline" not found`
	for who, msg := range map[string]string{"Tekton's PipelineRun": want.Message, "CustomRun": got.Message} {
		if !strings.Contains(msg, notFound) {
			t.Errorf("%s: message %q, want the resolver's %q", who, msg, notFound)
		}
	}
	if len(e.podsOf(cr.Name)) != 0 || len(e.childTaskRuns(cr.Name)) != 0 {
		t.Errorf("CustomRun %s: a run whose Pipeline cannot be resolved made pods or TaskRuns", cr.Name)
	}
}
