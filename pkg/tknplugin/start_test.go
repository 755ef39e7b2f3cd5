package tknplugin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	ktesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

const pipelineRunFile = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: p}
spec:
  tasks: [{name: a, taskSpec: {steps: [{name: s, image: busybox, script: "echo hi"}]}}]
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata:
  generateName: hello-
  labels: {team: blue}
spec:
  pipelineRef: {name: p}
  params: [{name: who, value: world}]
  workspaces: [{name: w, emptyDir: {}}]
  timeouts: {pipeline: 10m}
  taskRunTemplate: {serviceAccountName: builder}
`

// startWorld is a cluster with no run yet, whose API server names what has a
// generateName as the real one would (the fake clientset does not).
func startWorld(t *testing.T) *world {
	w := &world{t: t, kube: k8sfake.NewSimpleClientset(), tekton: tektonfake.NewSimpleClientset(), logs: &fakeLogs{}}
	w.tekton.PrependReactor("create", "customruns", func(a ktesting.Action) (bool, runtime.Object, error) {
		cr := a.(ktesting.CreateAction).GetObject().(*v1beta1.CustomRun)
		if cr.Name == "" {
			cr.Name = cr.GenerateName + "x7k2p"
		}
		w.name = cr.Name
		return false, nil, nil
	})
	return w
}

func writeFile(t *testing.T, content string) string {
	path := filepath.Join(t.TempDir(), "run.yaml")
	must(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// start creates, for the file's PipelineRun, the CustomRun `pipelineinpod render` shows
// for it, and only that.
func TestStart(t *testing.T) {
	w := startWorld(t)
	var e testEnv
	if code := Main(context.Background(), e.env(w), []string{"start", "-f", writeFile(t, pipelineRunFile)}); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, e.err.String())
	}
	got := w.cr()
	var pr v1.PipelineRun
	must(t, yaml.Unmarshal([]byte(strings.Split(pipelineRunFile, "---\n")[1]), &pr))
	want, err := v1alpha1.FromPipelineRun(&pr)
	must(t, err)
	want.Name, want.Namespace = "hello-x7k2p", testNS
	if d := cmp.Diff(want.Spec, got.Spec); d != "" {
		t.Errorf("spec (-render's +created):\n%s", d)
	}
	if d := cmp.Diff(want.ObjectMeta, got.ObjectMeta); d != "" {
		t.Errorf("metadata (-render's +created):\n%s", d)
	}
	if d := cmp.Diff(lines("CustomRun started: hello-x7k2p", "", "In order to track the run's progress run:",
		"tkn pipelineinpod logs hello-x7k2p -f -n ns"), e.out.String()); d != "" {
		t.Errorf("stdout (-want +got):\n%s", d)
	}
	if want := "Pipeline p not created: start runs the PipelineRuns of a file"; !strings.Contains(e.err.String(), want) {
		t.Errorf("stderr %q, want it to say %q", e.err.String(), want)
	}
	if pipelines, _ := w.tekton.TektonV1().Pipelines(testNS).List(context.Background(), metav1.ListOptions{}); len(pipelines.Items) != 0 {
		t.Errorf("start created %d Pipelines", len(pipelines.Items))
	}
}

// --follow prints the run's logs until it ends, and exits 1 if it failed.
func TestStartFollow(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(*v1beta1.CustomRun)
		code int
	}{
		{"succeeds", succeed, 0},
		{"fails", func(cr *v1beta1.CustomRun) { cr.Status.MarkCustomRunFailed("Failed", "task a failed") }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWorld(t)
			a := task{name: "a", key: "a", steps: []string{"s"}}
			var e testEnv
			e.frames = []func(){
				func() {
					w.addPod(0, a)
					w.updatePod(0, running)
				},
				func() {
					pod := plan.PodName(w.name, 0)
					w.logs.add(pod, a.container("s"), line(1.1, "hi"))
					w.logs.add(pod, plan.ReporterContainer, report(1.5, plan.TaskState{Key: "a", Phase: plan.PhaseSucceeded, StartTime: mt(1), CompletionTime: mt(1.2),
						Steps: []plan.StepState{stepState(a, "s", 1, 1.2, 0)}}))
					w.updatePod(0, terminate())
					w.updateCR(tc.end)
				},
			}
			code := Main(context.Background(), e.env(w), []string{"start", "--follow", "-n", testNS, "-f", writeFile(t, pipelineRunFile)})
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, e.err.String())
			}
			if d := cmp.Diff(lines("CustomRun started: hello-x7k2p", "", "[a : s] hi", ""), e.out.String()); d != "" {
				t.Errorf("stdout (-want +got):\n%s", d)
			}
			if e.sleeps != len(e.frames) {
				t.Errorf("followed for %d looks of %d", e.sleeps, len(e.frames))
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		args       []string
		want       string
	}{
		{"no file", "", []string{"start"}, "start needs -f FILE"},
		{"no run in the file", "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: t}\nspec: {steps: [{name: s, image: busybox}]}\n", nil,
			"no PipelineRun to start"},
		{"another namespace than asked", "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: r, namespace: other}\nspec: {pipelineRef: {name: p}}\n", []string{"-n", testNS},
			"the run's namespace other is not the namespace asked for (ns)"},
		{"not YAML of a run", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", nil, `kind "Pod": not a kind render reads`},
		{"a CustomRun of another kind", "apiVersion: tekton.dev/v1beta1\nkind: CustomRun\nmetadata: {name: c}\nspec: {customRef: {apiVersion: example.dev/v1, kind: Other}}\n", nil,
			"CustomRun c is not a PipelineInPod run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWorld(t)
			args := append([]string{"start"}, tc.args...)
			if tc.file != "" {
				args = append(args, "-f", writeFile(t, tc.file))
			}
			var e testEnv
			if code := Main(context.Background(), e.env(w), args); code == 0 || !strings.Contains(e.err.String(), tc.want) {
				t.Errorf("exit %d, stderr %q, want it to contain %q", code, e.err.String(), tc.want)
			}
			if crs, _ := w.tekton.TektonV1beta1().CustomRuns(testNS).List(context.Background(), metav1.ListOptions{}); len(crs.Items) != 0 {
				t.Errorf("%d CustomRuns: a refused file must create none", len(crs.Items))
			}
		})
	}
}
