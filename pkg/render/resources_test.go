package render

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
)

// The pipelines of issue 10, rendered with both mechanisms: the pod reserves the peak
// plus our overhead, not the sum of its containers.
func TestRightSizedPipelines(t *testing.T) {
	for _, tc := range []struct {
		file                string
		sumCPU, sumMemory   string
		peakCPU, peakMemory string
		overCPU, overMemory string
		peakTasks           []string
	}{
		// 20 steps + reporter: 20*3m + 15m and 20*8Mi + 8Mi + 40Mi.
		{"ten-by-two.yaml", "20", "20Gi", "1", "1Gi", "75m", "208Mi", nil},
		// 4 steps + reporter: 4*3m + 15m and 4*8Mi + 8Mi + 40Mi.
		{"three-parallel.yaml", "2", "256Mi", "1500m", "192Mi", "27m", "80Mi", []string{"a", "b", "c"}},
		// Every container defaults to 500m/128Mi (5 steps + reporter, and the init
		// container counted as the largest init container); two tasks run at once.
		{"limitrange.yaml", "3", "768Mi", "1", "256Mi", "30m", "88Mi", []string{"a", "b"}},
	} {
		for _, podLevel := range []bool{true, false} {
			name := tc.file + map[bool]string{true: "/pod-level", false: "/container"}[podLevel]
			t.Run(name, func(t *testing.T) {
				docs, err := ReadFiles(filepath.Join("testdata", "resources", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				opts := DefaultOptions()
				opts.PodLevelResources = podLevel
				res, err := Render(context.Background(), opts, docs)
				if err != nil || len(res) != 1 || res[0].Err != nil {
					t.Fatal(err, res)
				}
				r := res[0].Output.Resources
				eq := func(what string, got resource.Quantity, want string) {
					t.Helper()
					if got.Cmp(resource.MustParse(want)) != 0 {
						t.Errorf("%s = %s, want %s", what, got.String(), want)
					}
				}
				eq("sum cpu", r.Sum[corev1.ResourceCPU], tc.sumCPU)
				eq("sum memory", r.Sum[corev1.ResourceMemory], tc.sumMemory)
				eq("peak cpu", r.Peak[corev1.ResourceCPU], tc.peakCPU)
				eq("peak memory", r.Peak[corev1.ResourceMemory], tc.peakMemory)
				eq("overhead cpu", r.Overhead[corev1.ResourceCPU], tc.overCPU)
				eq("overhead memory", r.Overhead[corev1.ResourceMemory], tc.overMemory)
				wantCPU, wantMem := resource.MustParse(tc.peakCPU), resource.MustParse(tc.peakMemory)
				wantCPU.Add(resource.MustParse(tc.overCPU))
				wantMem.Add(resource.MustParse(tc.overMemory))
				eq("requests cpu", r.Requests[corev1.ResourceCPU], wantCPU.String())
				eq("requests memory", r.Requests[corev1.ResourceMemory], wantMem.String())
				if tc.peakTasks != nil && !equal(r.PeakTasks[corev1.ResourceCPU], tc.peakTasks) {
					t.Errorf("cpu peak from %v, want %v", r.PeakTasks[corev1.ResourceCPU], tc.peakTasks)
				}
				p := res[0].Output.Pod
				if want := map[bool]string{true: assemble.MechanismPodLevel, false: assemble.MechanismContainer}[podLevel]; r.Mechanism != want {
					t.Errorf("mechanism %s, want %s", r.Mechanism, want)
				}
				if (p.Spec.Resources != nil) != podLevel {
					t.Errorf("spec.resources = %v with pod-level %v", p.Spec.Resources, podLevel)
				}
				if p.Annotations[assemble.AnnotationResources] == "" {
					t.Error("no resources annotation on the pod")
				}
			})
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Matrix instances run at once, and finally tasks only with each other: through
// compile's schedule, a matrix of three 1-CPU instances between two 2-CPU tasks peaks at
// 3 CPU, made of the three instances.
func TestRightSizedMatrixAndFinally(t *testing.T) {
	doc := `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: m}
spec:
  pipelineSpec:
    tasks:
    - name: prep
      taskSpec: {steps: [{name: s, image: busybox, command: ["true"], computeResources: {requests: {cpu: "2"}}}]}
    - name: build
      runAfter: [prep]
      matrix: {params: [{name: v, value: [a, b, c]}]}
      taskSpec:
        params: [{name: v}]
        steps: [{name: s, image: busybox, command: [echo, $(params.v)], computeResources: {requests: {cpu: "1"}}}]
    finally:
    - name: f1
      taskSpec: {steps: [{name: s, image: busybox, command: ["true"], computeResources: {requests: {cpu: "1500m"}}}]}
    - name: f2
      taskSpec: {steps: [{name: s, image: busybox, command: ["true"], computeResources: {requests: {cpu: "1"}}}]}
`
	docs, err := Parse("m.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Render(context.Background(), DefaultOptions(), docs)
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	r := res[0].Output.Resources
	if got := r.Peak[corev1.ResourceCPU]; got.Cmp(resource.MustParse("3")) != 0 {
		t.Errorf("peak cpu %s, want 3", got.String())
	}
	if want := []string{"build-0", "build-1", "build-2"}; !equal(r.PeakTasks[corev1.ResourceCPU], want) {
		t.Errorf("peak from %v, want %v", r.PeakTasks[corev1.ResourceCPU], want)
	}
}
