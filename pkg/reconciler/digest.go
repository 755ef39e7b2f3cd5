package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

// The pod's annotations are trusted only as created. The plan and run record are read
// back from the pod on every reconcile (so that observing never resolves the run again),
// and anyone who may patch pods (the steps' own service account, possibly) could rewrite
// them: which TaskRun a task's states go to, which results make the pipeline's. So the
// digests of both are kept in the CustomRun's status (observe.Summary.PodDigests) when
// the pod is created, and every read compares: a pod that differs fails the run with
// observe.ReasonPodAnnotationChanged, and nothing is read from it any more (its TaskRuns
// end from what they hold; see finish).
//
// The digests are written with the CustomRun's status at the end of the reconcile that
// created the pod. A controller that stops in between finds the pod without them; it
// then takes the pod's annotations as they are and stores their digests (the window is
// that of one reconcile, unless the controller stops in it; docs/design.md).

// digestedAnnotations are the annotations the run is read back from, with the word the
// failure names each by.
var digestedAnnotations = []struct{ name, word string }{
	{plan.AnnotationPlan, "plan"},
	{AnnotationRun, "run"},
}

// podDigests are the digests of pod's digested annotations; an absent one has none.
func podDigests(pod *corev1.Pod) map[string]string {
	out := map[string]string{}
	for _, a := range digestedAnnotations {
		if v, ok := pod.Annotations[a.name]; ok {
			sum := sha256.Sum256([]byte(v))
			out[a.name] = "sha256:" + hex.EncodeToString(sum[:])
		}
	}
	return out
}

// checkDigests compares the pod's annotations with the digests recorded when it was
// created (a.digests), and records them when there are none yet (see above).
func (a *runAttempt) checkDigests() error {
	got := podDigests(a.pod)
	if len(a.digests) == 0 {
		a.digests = got
		return nil
	}
	var changed []string
	for _, an := range digestedAnnotations {
		if got[an.name] != a.digests[an.name] {
			changed = append(changed, fmt.Sprintf("%s annotation (%s)", an.word, an.name))
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return &prepare.Failure{Reason: observe.ReasonPodAnnotationChanged, Err: fmt.Errorf(
		"the pod's %s was changed after creation (pod %q): the run is no longer observed from it",
		strings.Join(changed, " and the pod's "), a.pod.Name)}
}

// withDigests is s with the attempt's pod digests, once its pod was created.
func (a *runAttempt) withDigests(s observe.Summary) observe.Summary {
	if a.podCreated && len(a.digests) > 0 {
		s.PodDigests = maps.Clone(a.digests)
	}
	return s
}
