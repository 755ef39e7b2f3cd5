package assemble

import (
	"context"
	"sort"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
)

// defaultResources is the pod transformer Tekton's TaskRun reconciler hands its pod
// builder for config-defaults' default-container-resource-requirements (Tekton's
// pkg/internal/defaultresourcerequirements, which an internal package keeps from being
// imported): containers that ask for nothing get the resources configured for their
// name ("place-scripts"), for a prefix of it ("prefix-sidecar"), else for "default";
// Tekton's own containers get them even when they ask for something. It runs on each
// task's pod, where containers still have Tekton's names, before the tasks' pods are
// merged and the pod's demand is sized.
func defaultResources(ctx context.Context) pod.Transformer {
	byName := config.FromContextOrDefaults(ctx).Defaults.DefaultContainerResourceRequirements
	return func(p *corev1.Pod) (*corev1.Pod, error) {
		if len(byName) == 0 {
			return p, nil
		}
		var names, prefixes []string
		for k := range byName {
			switch {
			case k == config.ResourceRequirementDefaultContainerKey:
			case strings.HasPrefix(k, "prefix-"):
				prefixes = append(prefixes, k)
			default:
				names = append(names, k)
			}
		}
		// Tekton ranges over the map; sorted, two matching prefixes give the same pod
		// every time.
		sort.Strings(names)
		sort.Strings(prefixes)
		lists := [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers}
		// matched are Tekton's containers given resources by name or prefix, which a
		// less specific entry does not override.
		matched := map[*corev1.Container]bool{}
		apply := func(rr corev1.ResourceRequirements, applies func(c *corev1.Container) bool) {
			if rr.Size() == 0 {
				return
			}
			for _, list := range lists {
				for i := range list {
					c := &list[i]
					internal := pod.IsInternalContainer(c.Name)
					if applies(c) && (c.Resources.Size() == 0 || (internal && !matched[c])) {
						c.Resources = rr
						if internal {
							matched[c] = true
						}
					}
				}
			}
		}
		for _, n := range names {
			apply(byName[n], func(c *corev1.Container) bool { return c.Name == n })
		}
		for _, k := range prefixes {
			prefix := strings.TrimPrefix(k, "prefix-") + "-"
			apply(byName[k], func(c *corev1.Container) bool { return strings.HasPrefix(c.Name, prefix) })
		}
		if rr, ok := byName[config.ResourceRequirementDefaultContainerKey]; ok {
			apply(rr, func(*corev1.Container) bool { return true })
		}
		return p, nil
	}
}
