package assemble

import (
	"context"
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// platformCommandsEnv carries, from Tekton's pod builder to the entrypoint, the command
// of each platform of an image looked up in its registry (Tekton keeps the name
// unexported in pkg/pod).
const platformCommandsEnv = "TEKTON_PLATFORM_COMMANDS"

// lookUpSidecarEntrypoints gives every sidecar container of a task's pod p that has no
// command what Tekton's builder gives a step without one: its image pinned by digest and
// platformCommandsEnv, looked up in the image's registry with the run's service account
// and pull secrets. Tekton runs a sidecar as it is; here the entrypoint wraps it to stop
// it when its task ends, so it must know the command. Tekton's lookup (its
// EntrypointCache has no exported method) is reached through its builder, on a task whose
// steps are those sidecars. p's containers are the task's steps, then its sidecars.
func lookUpSidecarEntrypoints(ctx context.Context, b pod.Builder, tr *v1.TaskRun, p *corev1.Pod, steps int) error {
	var sidecars []int
	var probe v1.TaskSpec
	for i := steps; i < len(p.Spec.Containers); i++ {
		c := p.Spec.Containers[i]
		if len(c.Command) > 0 {
			continue
		}
		sidecars = append(sidecars, i)
		// The args decide, as for a step, whether the image's CMD is part of the command.
		probe.Steps = append(probe.Steps, v1.Step{Name: fmt.Sprintf("sidecar-%d", len(sidecars)), Image: c.Image, Args: c.Args})
	}
	if len(sidecars) == 0 {
		return nil
	}
	probeRun := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: tr.Name, Namespace: tr.Namespace},
		Spec:       v1.TaskRunSpec{ServiceAccountName: tr.Spec.ServiceAccountName, PodTemplate: tr.Spec.PodTemplate},
	}
	looked, err := b.Build(ctx, probeRun, probe)
	if err != nil {
		return fmt.Errorf("spec.sidecars: looking up the entrypoint of a sidecar's image: %w", err)
	}
	for j, i := range sidecars {
		found := looked.Spec.Containers[j]
		c := &p.Spec.Containers[i]
		c.Image = found.Image
		for _, e := range found.Env {
			if e.Name == platformCommandsEnv {
				c.Env = append(c.Env, e)
			}
		}
	}
	return nil
}
