package assemble

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
)

// defaultsContext carries Tekton's configuration with config-defaults data.
func defaultsContext(t *testing.T, data map[string]string) context.Context {
	t.Helper()
	cfg, err := v1alpha1.TektonConfig(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.GetDefaultsConfigName()}, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return config.ToContext(context.Background(), cfg)
}

func memory(q string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(q)}}
}

// config-defaults' default-container-resource-requirements, by Tekton's rules: a
// container's own resources win, except on Tekton's own containers; a name beats a
// prefix, a prefix beats "default".
func TestDefaultResources(t *testing.T) {
	ctx := defaultsContext(t, map[string]string{
		"default-container-resource-requirements": `
default: {requests: {memory: 1Mi}}
place-scripts: {requests: {memory: 2Mi}}
prefix-sidecar: {requests: {memory: 3Mi}}
prefix-step-build: {requests: {memory: 4Mi}}
`,
	})
	p := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: pod.ContainerNamePlaceScripts, Resources: memory("9Mi")}, {Name: pod.ContainerNamePrepare}},
		Containers: []corev1.Container{
			{Name: "step-build-image"}, {Name: "step-test"}, {Name: "step-own", Resources: memory("8Mi")},
			{Name: "sidecar-db"},
		},
	}}
	got, err := defaultResources(ctx)(p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		pod.ContainerNamePlaceScripts: "2Mi", // Tekton's own: configured by name, over its own
		pod.ContainerNamePrepare:      "1Mi", // Tekton's own, no entry: default
		"step-build-image":            "4Mi", // prefix
		"step-test":                   "1Mi", // default
		"step-own":                    "8Mi", // its own
		"sidecar-db":                  "3Mi", // prefix
	}
	have := map[string]string{}
	for _, c := range append(append([]corev1.Container{}, got.Spec.InitContainers...), got.Spec.Containers...) {
		q := c.Resources.Requests[corev1.ResourceMemory]
		have[c.Name] = q.String()
	}
	if d := cmp.Diff(want, have); d != "" {
		t.Errorf("memory requests (-want +got):\n%s", d)
	}

	// Without the entry, nothing changes.
	plain := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "step-a"}}}}
	if got, _ := defaultResources(defaultsContext(t, nil))(plain.DeepCopy()); !cmp.Equal(plain, got) {
		t.Errorf("with Tekton's defaults the pod changed: %v", cmp.Diff(plain, got))
	}
}
