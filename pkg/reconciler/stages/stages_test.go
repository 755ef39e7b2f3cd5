package stages

import (
	"testing"

	"github.com/pipelineinpod/pipelineinpod/pkg/build"
	"github.com/pipelineinpod/pipelineinpod/pkg/reconciler"
)

// The reconciler finds an attempt's pod by name without running the stages; it must use
// the name build gives the pod.
func TestPodNamesAgree(t *testing.T) {
	for _, name := range []string{"run", "a-very-long-customrun-name-that-kmeta-will-have-to-shorten-somehow-0123456789"} {
		for attempt := 0; attempt < 3; attempt++ {
			if got, want := reconciler.PodName(name, attempt), build.PodName(name, attempt); got != want {
				t.Errorf("PodName(%q, %d) = %q, build says %q", name, attempt, got, want)
			}
		}
	}
}
