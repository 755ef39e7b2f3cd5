package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// patchAnnotation changes one annotation of the attempt's pod as an account with
// pods/patch could.
func (h *harness) patchAnnotation(attempt int, name, value string) {
	h.t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{name: value}}})
	must(h.t, err)
	_, err = h.kube.CoreV1().Pods(ns).Patch(h.ctx, plan.PodName(h.crName, attempt), types.MergePatchType, patch, metav1.PatchOptions{})
	must(h.t, err)
}

// The digests of the pod's plan and run annotations are kept in the CustomRun's summary
// from the reconcile that creates the pod.
func TestPodDigestsRecorded(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	h.reconcile()
	p := h.pod(0)
	want := map[string]string{plan.AnnotationPlan: sha(p.Annotations[plan.AnnotationPlan]), AnnotationRun: sha(p.Annotations[AnnotationRun])}
	if d := cmp.Diff(want, observe.DecodeSummary(h.cr().Status.ExtraFields).PodDigests); d != "" {
		t.Errorf("digests (-want +got):\n%s", d)
	}
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	h.reconcile()
	if d := cmp.Diff(want, observe.DecodeSummary(h.cr().Status.ExtraFields).PodDigests); d != "" {
		t.Errorf("digests once running (-want +got):\n%s", d)
	}
}

// A pod whose plan or run annotation was changed after creation fails the run with a
// clear reason, and nothing is read from it: a forged plan (here: task a's states go to
// b's TaskRun) or run record (here: a pipeline result from another result) changes no
// TaskRun and no result. The TaskRuns end from what they hold, and the pod is deleted.
func TestPodAnnotationChanged(t *testing.T) {
	for _, tc := range []struct {
		name, annotation, words string
		forge                   func(h *harness) string
	}{{
		name: "plan", annotation: plan.AnnotationPlan, words: "the pod's plan annotation (pipelineinpod.tekton.dev/plan) was changed after creation",
		forge: func(h *harness) string {
			p, err := plan.Decode([]byte(h.pod(0).Annotations[plan.AnnotationPlan]))
			must(h.t, err)
			for i := range p.Tasks {
				if p.Tasks[i].Key == "a" {
					p.Tasks[i].TaskRun = trName("run", "b")
				}
			}
			s, err := p.Encode()
			must(h.t, err)
			return s
		},
	}, {
		name: "run record", annotation: AnnotationRun, words: "the pod's run annotation (pipelineinpod.tekton.dev/run) was changed after creation",
		forge: func(h *harness) string {
			var rec runRecord
			must(h.t, json.Unmarshal([]byte(h.pod(0).Annotations[AnnotationRun]), &rec))
			rec.Results = []v1.PipelineResult{{Name: "out", Value: *v1.NewStructuredValues("forged")}}
			s, err := rec.encode()
			must(h.t, err)
			return s
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newCustomRun("run"), taskA, taskB)
			h.prep.results = resultA
			h.reconcile()
			h.setPod(0, running)
			h.report(0, false, runningState(taskA, time.Second))
			h.reconcile()
			forged := tc.forge(h)
			h.patchAnnotation(0, tc.annotation, forged)
			h.report(0, true, finalState(taskA, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second, result("out", "forged?")),
				finalState(taskB, plan.PhaseSucceeded, "Succeeded", 2*time.Second, 3*time.Second))
			h.reconcile()
			want := view{Condition: "False/" + observe.ReasonPodAnnotationChanged, TaskRuns: map[string]string{"a": unknownRunning, "b": pending}, Pods: pods0}
			if d := cmp.Diff(want, h.view()); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
			if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); !strings.Contains(c.Message, tc.words) {
				t.Errorf("message %q, want %q", c.Message, tc.words)
			}
			h.reconcile()
			want = view{Condition: "False/" + observe.ReasonPodAnnotationChanged, TaskRuns: map[string]string{"a": "False/TaskRunCancelled", "b": "False/TaskRunCancelled"}}
			if d := cmp.Diff(want, h.view()); d != "" {
				t.Errorf("next reconcile (-want +got):\n%s", d)
			}
			for _, key := range []string{"a", "b"} {
				if tr := h.taskRun(key); tr.Status.Results != nil {
					t.Errorf("TaskRun %s has results %v from the changed pod", tr.Name, tr.Status.Results)
				}
			}
			if h.cr().Status.Results != nil {
				t.Errorf("CustomRun results %v", h.cr().Status.Results)
			}
		})
	}
}

// Cancelling does not bypass the check: a changed pod is not read from while the run ends.
func TestPodAnnotationChangedThenCancelled(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	h.reconcile()
	h.setPod(0, running)
	h.patchAnnotation(0, AnnotationRun, `{"pipelineName":"other"}`)
	h.updateCR(func(cr *v1beta1.CustomRun) { cr.Spec.Status = v1beta1.CustomRunSpecStatusCancelled })
	h.reconcile()
	if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); cond(c) != "False/"+observe.ReasonPodAnnotationChanged {
		t.Errorf("%s %q", cond(c), c.Message)
	}
}

// A controller that stopped after creating the pod, before the CustomRun's status (with
// the digests) was stored, takes the pod as it finds it and stores its digests; from
// then on a change is caught.
func TestPodDigestsAfterACrash(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	failOnce(&h.tekton.Fake, "update", "customruns", "status")
	h.reconcile()
	if s := observe.DecodeSummary(h.cr().Status.ExtraFields); s.PodName != "" || s.PodDigests != nil || h.pod(0) == nil {
		t.Fatalf("setup: summary %+v, pod %v", s, h.pod(0) != nil)
	}
	h.restart()
	h.setPod(0, running)
	h.report(0, false, runningState(taskA, time.Second))
	h.reconcile()
	p := h.pod(0)
	want := map[string]string{plan.AnnotationPlan: sha(p.Annotations[plan.AnnotationPlan]), AnnotationRun: sha(p.Annotations[AnnotationRun])}
	s := observe.DecodeSummary(h.cr().Status.ExtraFields)
	if d := cmp.Diff(want, s.PodDigests); d != "" || s.PodName != "run-pod" {
		t.Fatalf("podName %q, digests (-want +got):\n%s", s.PodName, d)
	}
	h.patchAnnotation(0, plan.AnnotationPlan, fmt.Sprintf(`{"tasks":[{"key":"a","pipelineTask":"a","taskRun":%q}]}`, trName("run", "b")))
	h.reconcile()
	if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); cond(c) != "False/"+observe.ReasonPodAnnotationChanged {
		t.Errorf("%s %q", cond(c), c.Message)
	}
}
