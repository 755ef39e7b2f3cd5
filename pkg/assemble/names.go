package assemble

import (
	"github.com/tektoncd/pipeline/pkg/pod"
	"knative.dev/pkg/kmeta"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// reserved are the pod's own containers. A task's containers are "step-<task>-<name>",
// so a task "pip" with a step "reporter" (or "init", "place-scripts") would make one of
// them: Tekton lets a Task name its steps freely, so the user's container is the one
// renamed, keeping the step's name (its state, $(steps.<name>…), the TaskRun's status).
var reserved = map[string]bool{
	ContainerInit:          true,
	ContainerPlaceScripts:  true,
	plan.ReporterContainer: true,
}

// containerName names a container of task key made from Tekton's container name:
// "step-" prefixed, sidecars too, so Tekton's stopSidecars leaves every container alone
// (docs/design.md hazard 2); a valid DNS label (kmeta.ChildName shortens it with a
// hash); never one of ours. Other collisions, between two tasks' names, are refused by
// merger.claim.
func containerName(key, name string) string {
	n := kmeta.ChildName(pod.GetContainerName(key), "-"+name)
	if reserved[n] {
		n = kmeta.ChildName(n, "-user")
	}
	return n
}
