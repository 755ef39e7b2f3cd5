package plan

import (
	"fmt"

	"knative.dev/pkg/kmeta"
)

// PodName is the pod of a CustomRun's run attempt (0 = the first; every CustomRun retry
// is a new pod). The assembler names the pod with it and the controller finds the pod
// with it; being deterministic, a re-reconcile or a restarted controller finds the pod
// instead of making a second one.
func PodName(customRunName string, runAttempt int) string {
	if runAttempt == 0 {
		return kmeta.ChildName(customRunName, "-pod")
	}
	return kmeta.ChildName(customRunName, fmt.Sprintf("-pod-retry%d", runAttempt))
}
