package assemble_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/kmeta"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile/compiletest"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/render"
)

const twoTasks = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  workspaces: [{name: shared, emptyDir: {}}]
  pipelineSpec:
    workspaces: [{name: shared}]
    tasks:
    - name: a
      workspaces: [{name: w, workspace: shared}]
      taskSpec:
        workspaces: [{name: w}]
        steps:
        - {name: one, image: busybox, script: "echo > $(workspaces.w.path)/f"}
        - {name: two, image: busybox, command: [cat], args: ["$(workspaces.w.path)/f"]}
        sidecars:
        - {name: helper, image: busybox, command: [sleep, "3600"]}
    - name: b
      runAfter: [a]
      workspaces: [{name: w, workspace: shared}]
      taskSpec:
        workspaces: [{name: w}]
        steps: [{name: one, image: busybox, script: "cat $(workspaces.w.path)/f"}]
`

func buildPod(t *testing.T) *assemble.Output {
	t.Helper()
	docs, err := render.Parse("two.yaml", []byte(twoTasks))
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(context.Background(), render.DefaultOptions(), docs)
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	return res[0].Output
}

func mountAt(c corev1.Container, path string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == path {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func container(t *testing.T, p *corev1.Pod, name string) corev1.Container {
	t.Helper()
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// Each task keeps its own Tekton directories; pipeline workspaces are one volume.
func TestVolumesPerTaskAndShared(t *testing.T) {
	p := buildPod(t).Pod
	a1, a2, b1 := container(t, p, "step-a-one"), container(t, p, "step-a-two"), container(t, p, "step-b-one")
	for _, dir := range []string{"/workspace", "/tekton/home", "/tekton/results", "/tekton/steps"} {
		if ma, mb := mountAt(a1, dir), mountAt(b1, dir); ma == nil || mb == nil || ma.Name == mb.Name {
			t.Errorf("%s: tasks a and b must have volumes of their own, got %v and %v", dir, ma, mb)
		}
		if ma, ma2 := mountAt(a1, dir), mountAt(a2, dir); ma.Name != ma2.Name {
			t.Errorf("%s: the steps of one task share it, got %s and %s", dir, ma.Name, ma2.Name)
		}
	}
	if ma, mb := mountAt(a1, "/workspace/w"), mountAt(b1, "/workspace/w"); ma == nil || mb == nil || ma.Name != mb.Name {
		t.Errorf("the pipeline workspace must be one volume, got %v and %v", ma, mb)
	}
	// A step's run directory is read-only to the task's other steps, as in Tekton.
	if m := mountAt(a2, "/tekton/run/0"); m == nil || !m.ReadOnly {
		t.Errorf("step two must see step one's run directory read-only, got %v", m)
	}
	// The shared state: read-only, but for the task's own subdirectory.
	want := []corev1.VolumeMount{
		{Name: "pip-state", MountPath: plan.StateDir, ReadOnly: true},
		{Name: "pip-state", MountPath: plan.StateDir + "/a", SubPath: "a"},
	}
	got := []corev1.VolumeMount{*mountAt(a1, plan.StateDir), *mountAt(a1, plan.StateDir+"/a")}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("state mounts (-want +got):\n%s", d)
	}
}

// The containers and what the entrypoint is told.
func TestContainersAndPlan(t *testing.T) {
	out := buildPod(t)
	p := out.Pod
	var inits []string
	for _, c := range p.Spec.InitContainers {
		inits = append(inits, c.Name)
	}
	// Our init copies the entrypoint that place-scripts then runs (decode-script).
	if d := cmp.Diff([]string{assemble.ContainerInit, assemble.ContainerPlaceScripts}, inits); d != "" {
		t.Errorf("init containers (-want +got):\n%s", d)
	}
	sc := container(t, p, "step-a-sidecar-helper")
	if !strings.HasPrefix(strings.Join(sc.Args, " "), "-pip_mode sidecar -pip_task a ") || !strings.Contains(strings.Join(sc.Args, " "), "-entrypoint sleep -- 3600") {
		t.Errorf("sidecar must be wrapped by the entrypoint, got %v %v", sc.Command, sc.Args)
	}
	two := container(t, p, "step-a-two")
	if !strings.HasPrefix(strings.Join(two.Args, " "), "-pip_task a -pip_plan /tekton/pip/plan/plan.json -pip_state /tekton/pip/state -pip_step 1 -pip_step_name two -wait_file /tekton/run/0/out") {
		t.Errorf("step args: %v", two.Args)
	}
	pl, err := plan.Decode([]byte(p.Annotations[plan.AnnotationPlan]))
	if err != nil {
		t.Fatal(err)
	}
	wantPlan := []plan.Task{
		{Key: "a", PipelineTask: "a", TaskRun: "r-a", Steps: []string{"step-a-one", "step-a-two"}, Sidecars: []string{"step-a-sidecar-helper"}},
		{Key: "b", PipelineTask: "b", TaskRun: "r-b", RunAfter: []string{"a"}, Steps: []string{"step-b-one"}},
	}
	if d := cmp.Diff(wantPlan, pl.Tasks); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}
	// Sidecars make the pod wait for the controller's ready annotation.
	if _, ready := p.Annotations["tekton.dev/ready"]; ready {
		t.Error("a pod with sidecars must not be ready at creation")
	}
	if p.Name != plan.PodName("r", 0) || p.Spec.Containers[0].Name != plan.ReporterContainer {
		t.Errorf("pod %s, first container %s", p.Name, p.Spec.Containers[0].Name)
	}
}

// compileRun compiles the one run of doc and gives the options the controller would
// assemble its pod with.
func compileRun(t *testing.T, doc string) (context.Context, *compile.Compiled, assemble.Options) {
	t.Helper()
	r, err := compiletest.Compile(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	ro := render.DefaultOptions()
	return compiletest.Context(t), r.Compiled, assemble.Options{Images: ro.Images, EntrypointImage: ro.EntrypointImage, KubeClient: r.KubeClient, Resolver: r.Resolver}
}

// The pod's name comes from the attempt the caller passes, not from the CustomRun's
// status, which may not yet record the retry the pod is for.
func TestAttemptNamesThePod(t *testing.T) {
	for _, tc := range []struct {
		attempt, retriesInStatus int
		want                     string
	}{
		{attempt: 0, want: "r-pod"},
		{attempt: 2, want: "r-pod-retry2"},
		{attempt: 0, retriesInStatus: 3, want: "r-pod"},
		{attempt: 1, retriesInStatus: 3, want: "r-pod-retry1"},
	} {
		ctx, c, opts := compileRun(t, twoTasks)
		c.CustomRun.Status.RetriesStatus = make([]v1beta1.CustomRunStatus, tc.retriesInStatus)
		opts.Attempt = tc.attempt
		out, err := assemble.Pod(ctx, opts, c)
		if err != nil {
			t.Fatal(err)
		}
		if out.Pod.Name != tc.want || out.Pod.Name != plan.PodName("r", tc.attempt) {
			t.Errorf("attempt %d with %d retries in status: pod %q, want %q", tc.attempt, tc.retriesInStatus, out.Pod.Name, tc.want)
		}
	}
}

// The pod and the PVCs are the CustomRun's: in its namespace, owned by it, and labelled
// so the controller's informers see them, whatever labels a claim template brings.
func TestPodAndClaimMetadata(t *testing.T) {
	ctx, c, opts := compileRun(t, `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r, namespace: ns}
spec:
  workspaces:
  - name: data
    volumeClaimTemplate:
      metadata:
        labels: {team: blue, tekton.dev/customRun: other}
        annotations: {note: kept}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  pipelineSpec:
    workspaces: [{name: data}]
    tasks:
    - name: a
      workspaces: [{name: data}]
      taskSpec:
        workspaces: [{name: data}]
        steps: [{name: s, image: busybox, script: "true"}]
`)
	out, err := assemble.Pod(ctx, opts, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.PVCs) != 1 {
		t.Fatalf("PVCs: %v", out.PVCs)
	}
	owner := []metav1.OwnerReference{*kmeta.NewControllerRef(c.CustomRun)}
	for _, tc := range []struct {
		what   string
		meta   metav1.ObjectMeta
		labels map[string]string
	}{
		{"pod", out.Pod.ObjectMeta, map[string]string{"tekton.dev/customRun": "r", "tekton.dev/pipeline": "r", "app.kubernetes.io/managed-by": "pipelineinpod"}},
		{"pvc", out.PVCs[0].ObjectMeta, map[string]string{"tekton.dev/customRun": "r", "team": "blue", "app.kubernetes.io/managed-by": "pipelineinpod"}},
	} {
		if d := cmp.Diff(tc.labels, tc.meta.Labels); d != "" {
			t.Errorf("%s labels (-want +got):\n%s", tc.what, d)
		}
		if d := cmp.Diff(owner, tc.meta.OwnerReferences); d != "" || tc.meta.Namespace != "ns" {
			t.Errorf("%s in namespace %q, owners (-want +got):\n%s", tc.what, tc.meta.Namespace, d)
		}
	}
	if out.PVCs[0].Annotations["note"] != "kept" || out.PVCs[0].Name != c.Workspaces[0].ClaimName {
		t.Errorf("pvc %s annotations %v", out.PVCs[0].Name, out.PVCs[0].Annotations)
	}
}

// The pod carries what its child TaskRuns carry, as Tekton's pod carries its TaskRun's
// labels and annotations: the run's and each task's own, except keys that name one task
// or that two tasks set differently; where an outer PipelineRun made the CustomRun, its
// place there under Tekton's keys; ours over everything.
func TestPodMetadataFromTaskRuns(t *testing.T) {
	ctx, c, opts := compileRun(t, `apiVersion: tekton.dev/v1beta1
kind: CustomRun
metadata:
  name: outer-in-one-pod
  labels:
    tekton.dev/pipelineRun: outer
    tekton.dev/pipelineRunUID: outer-uid
    tekton.dev/pipeline: outer-pipeline
    tekton.dev/pipelineTask: in-one-pod
    tekton.dev/memberOf: tasks
    team: blue
    tekton.dev/customRun: forged
  annotations: {from-outer: "yes", pipelineinpod.tekton.dev/plan: forged}
spec:
  customSpec:
    apiVersion: tekton.dev/v1alpha1
    kind: PipelineInPod
    spec:
      pipelineSpec:
        tasks:
        - name: a
          onError: continue
          taskSpec:
            metadata:
              labels: {tier: build, network: egress}
              annotations: {sidecar.istio.io/inject: "false", tekton.dev/ready: READY}
            steps: [{name: s, image: busybox, script: "x"}]
        - name: b
          taskSpec:
            metadata: {labels: {tier: test}}
            steps: [{name: s, image: busybox, script: "x"}]
`)
	out, err := assemble.Pod(ctx, opts, c)
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		"tekton.dev/customRun": "outer-in-one-pod", "app.kubernetes.io/managed-by": "pipelineinpod",
		"tekton.dev/pipelineRun": "outer", "tekton.dev/pipelineRunUID": "outer-uid", "tekton.dev/pipeline": "outer-pipeline",
		"tekton.dev/pipelineTask": "in-one-pod", "tekton.dev/memberOf": "tasks",
		compile.ParentPipelineRunLabel: "outer", compile.ParentPipelineRunUIDLabel: "outer-uid", compile.ParentPipelineTaskLabel: "in-one-pod",
		"team": "blue", "network": "egress",
	}
	if d := cmp.Diff(wantLabels, out.Pod.Labels); d != "" {
		t.Errorf("pod labels (-want +got):\n%s", d)
	}
	got := out.Pod.Annotations
	for k, want := range map[string]string{"from-outer": "yes", "sidecar.istio.io/inject": "false"} {
		if got[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, got[k], want)
		}
	}
	for _, k := range []string{plan.ReadyAnnotation, v1.PipelineTaskOnErrorAnnotation} {
		if v, ok := got[k]; ok {
			t.Errorf("annotation %s = %q: one task's, or ours to decide, must not come from a task", k, v)
		}
	}
	if _, err := plan.Decode([]byte(got[plan.AnnotationPlan])); err != nil {
		t.Errorf("the plan annotation was replaced: %v", err)
	}
}

// The pod's own preparation (the entrypoint's init mode): the reporter's postStart hook,
// the reporter first, when no init container needs the entrypoint; ContainerInit before
// place-scripts, which runs it (decode-script), when a task has a script.
func TestPreparation(t *testing.T) {
	const commandsOnly = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - {name: a, taskSpec: {steps: [{name: one, image: busybox, command: [echo, a]}]}}
`
	docs, err := render.Parse("commands.yaml", []byte(commandsOnly))
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(context.Background(), render.DefaultOptions(), docs)
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		wantInits []string
		wantHook  bool
	}{
		{name: "commands only", pod: res[0].Output.Pod, wantHook: true},
		{name: "scripts", pod: buildPod(t).Pod, wantInits: []string{assemble.ContainerInit, assemble.ContainerPlaceScripts}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var inits []string
			for _, c := range tc.pod.Spec.InitContainers {
				inits = append(inits, c.Name)
			}
			if d := cmp.Diff(tc.wantInits, inits); d != "" {
				t.Errorf("init containers (-want +got):\n%s", d)
			}
			reporter := tc.pod.Spec.Containers[0]
			if reporter.Name != plan.ReporterContainer {
				t.Fatalf("first container %q, want the reporter", reporter.Name)
			}
			hook := reporter.Lifecycle != nil && reporter.Lifecycle.PostStart != nil && reporter.Lifecycle.PostStart.Exec != nil
			if hook != tc.wantHook {
				t.Fatalf("reporter's postStart hook: %v, want %v", reporter.Lifecycle, tc.wantHook)
			}
			bin, state := mountAt(reporter, "/tekton/bin"), mountAt(reporter, plan.StateDir)
			if !tc.wantHook {
				if bin != nil || state == nil || !state.ReadOnly {
					t.Errorf("a reporter that prepares nothing reads the state only: %v", reporter.VolumeMounts)
				}
				return
			}
			if got := strings.Join(reporter.Lifecycle.PostStart.Exec.Command, " "); got != "/ko-app/entrypoint -pip_mode init -pip_plan "+plan.PlanFile+" -pip_state "+plan.StateDir+" -pip_bin /tekton/bin/entrypoint" {
				t.Errorf("postStart hook %q", got)
			}
			if bin == nil || bin.ReadOnly || state == nil || state.ReadOnly {
				t.Errorf("the hook writes the entrypoint and the state: %v", reporter.VolumeMounts)
			}
		})
	}
}
