package reconciler

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/controller"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

var (
	taskA   = taskDef{name: "a", steps: 2, results: []string{"out"}}
	taskB   = taskDef{name: "b", steps: 1}
	final   = taskDef{name: "f", steps: 1, finally: true}
	withSC  = taskDef{name: "svc", steps: 1, sidecars: 1}
	resultA = []v1.PipelineResult{{Name: "out", Value: *v1.NewStructuredValues("$(tasks.a.results.out)")}}
	resultB = []v1.PipelineResult{{Name: "from-b", Value: *v1.NewStructuredValues("$(tasks.b.results.x)")}}
)

// step is one moment of a scenario: change the world, reconcile, look.
type step struct {
	name  string
	do    func(h *harness)
	want  view
	check func(t *testing.T, h *harness)
}

type scenario struct {
	name    string
	cr      func(*v1beta1.CustomRun)
	tasks   []taskDef
	results []v1.PipelineResult
	steps   []step
}

const (
	unknownRunning = "Unknown/Running"
	pending        = ""
)

var pods0 = []string{"run-pod"}

func TestTransitions(t *testing.T) {
	for _, sc := range []scenario{{
		name:  "create",
		tasks: []taskDef{taskA, taskB},
		steps: []step{{
			name: "first reconcile creates the TaskRuns and the pod",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				tr := h.taskRun("a")
				if tr.Spec.ManagedBy == nil || *tr.Spec.ManagedBy != observe.TaskRunManagedBy {
					t.Errorf("spec.managedBy = %v, want %q", tr.Spec.ManagedBy, observe.TaskRunManagedBy)
				}
				if tr.Spec.Status != v1.TaskRunSpecStatusPending {
					t.Errorf("spec.status = %q", tr.Spec.Status)
				}
				p := h.pod(0)
				if p.Annotations[AnnotationRun] == "" || p.Labels[v1.ManagedByLabelKey] != "pipelineinpod" {
					t.Errorf("pod metadata: %v %v", p.Labels, p.Annotations)
				}
				s := observe.DecodeSummary(h.cr().Status.ExtraFields)
				if s.PodName != "run-pod" || len(s.TaskRuns) != 2 || s.PipelineName != "pipeline" {
					t.Errorf("summary = %+v", s)
				}
				if !h.requeued() {
					t.Errorf("a running CustomRun must be requeued, got %v", h.lastErr)
				}
				if ev := h.events(); len(ev) != 1 || ev[0] != "Normal Started " {
					t.Errorf("events = %q, want one Started", ev)
				}
			},
		}, {
			name: "a second reconcile changes nothing",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				if h.prep.calls != 1 {
					t.Errorf("stages ran %d times, want once", h.prep.calls)
				}
			},
		}},
	}, {
		name:    "running then success",
		tasks:   []taskDef{taskA, taskB},
		results: resultA,
		steps: []step{{
			name: "create",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
		}, {
			name: "a runs",
			do: func(h *harness) {
				h.setPod(0, running)
				h.report(0, false, runningState(taskA, 2*time.Second))
			},
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": unknownRunning, "b": pending}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				tr := h.taskRun("a")
				if tr.Status.PodName != "run-pod" || tr.Status.StartTime == nil || len(tr.Status.Steps) != 2 {
					t.Errorf("running TaskRun status: podName %q start %v steps %d", tr.Status.PodName, tr.Status.StartTime, len(tr.Status.Steps))
				}
				if tr.Status.Steps[0].Running == nil || tr.Status.Steps[1].Waiting == nil || tr.Status.Steps[0].Container != "step-a-s0" || tr.Status.Steps[0].Name != "s0" {
					t.Errorf("steps = %+v", tr.Status.Steps)
				}
				if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); !strings.Contains(c.Message, "Incomplete: 2") {
					t.Errorf("message = %q", c.Message)
				}
			},
		}, {
			name: "both succeed",
			do: func(h *harness) {
				h.report(0, true,
					finalState(taskA, plan.PhaseSucceeded, "Succeeded", 2*time.Second, 5*time.Second, result("out", "hello")),
					finalState(taskB, plan.PhaseSucceeded, "Succeeded", 5*time.Second, 8*time.Second))
			},
			want: view{Condition: "True/Succeeded", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "True/Succeeded"}, Pods: pods0,
				Results: []v1beta1.CustomRunResult{{Name: "out", Value: "hello"}}},
			check: func(t *testing.T, h *harness) {
				tr := h.taskRun("a")
				if tr.Status.CompletionTime == nil || !tr.Status.CompletionTime.Equal(at(5*time.Second)) || len(tr.Status.Results) != 1 {
					t.Errorf("final TaskRun status: %+v", tr.Status.TaskRunStatusFields)
				}
				if tr.Status.TaskSpec == nil {
					t.Error("status.taskSpec is not set")
				}
				cr := h.cr()
				if cr.Status.CompletionTime == nil || h.requeued() {
					t.Errorf("completion %v, requeued %v", cr.Status.CompletionTime, h.requeued())
				}
				ev := h.events()
				if len(ev) == 0 || !strings.HasPrefix(ev[len(ev)-1], "Normal Succeeded Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0") {
					t.Errorf("events = %q", ev)
				}
			},
		}, {
			name: "done: nothing more is written",
			want: view{Condition: "True/Succeeded", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "True/Succeeded"}, Pods: pods0,
				Results: []v1beta1.CustomRunResult{{Name: "out", Value: "hello"}}},
			check: func(t *testing.T, h *harness) {
				if w := h.writes(); w != (writeCount{}) {
					t.Errorf("writes on a done run: %+v", w)
				}
			},
		}},
	}, {
		name:  "failure",
		tasks: []taskDef{taskA, taskB},
		steps: []step{{
			name: "create",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
		}, {
			name: "a succeeds, b fails",
			do: func(h *harness) {
				h.setPod(0, running)
				h.report(0, true,
					finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second),
					finalState(taskB, plan.PhaseFailed, "Failed", time.Second, 2*time.Second))
			},
			want: view{Condition: "False/Failed", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "False/Failed"}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				c := h.cr().Status.GetCondition(apis.ConditionSucceeded)
				if !strings.Contains(c.Message, `task "b" (TaskRun "run-b") Failed: "step-b-s0" exited with code 1`) {
					t.Errorf("message does not name the failed task: %q", c.Message)
				}
				if tr := h.taskRun("b"); tr.Status.Steps[0].Terminated == nil || tr.Status.Steps[0].Terminated.ExitCode != 1 {
					t.Errorf("steps = %+v", tr.Status.Steps)
				}
				if ev := h.events(); !strings.HasPrefix(ev[len(ev)-1], "Warning Failed ") {
					t.Errorf("events = %q", ev)
				}
			},
		}},
	}, {
		name:    "when skipped",
		tasks:   []taskDef{taskA, taskB},
		results: append(append([]v1.PipelineResult{}, resultA...), resultB...),
		steps: []step{{
			name: "create",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
		}, {
			name: "b is skipped by its when expressions",
			do: func(h *harness) {
				h.setPod(0, running)
				h.report(0, true,
					finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second, result("out", "x")),
					finalState(taskB, plan.PhaseSkipped, string(v1.WhenExpressionsSkip), 0, time.Second))
			},
			// b's result is left out, as Tekton leaves out results of skipped tasks. b's
			// TaskRun, which never ran, gets no status: it is not failed, and goes once
			// the CustomRun's summary records why it was skipped.
			want: view{Condition: "True/Succeeded", TaskRuns: map[string]string{"a": "True/Succeeded", "b": pending}, Pods: pods0,
				Results: []v1beta1.CustomRunResult{{Name: "out", Value: "x"}}},
			check: func(t *testing.T, h *harness) {
				tr := h.taskRun("b")
				if !equality.Semantic.DeepEqual(tr.Status, v1.TaskRunStatus{}) {
					t.Errorf("skipped TaskRun got a status: %+v", tr.Status)
				}
				s := observe.DecodeSummary(h.cr().Status.ExtraFields)
				if ts, _ := s.Task(tr.Name); ts.State != plan.PhaseSkipped || ts.Reason != string(v1.WhenExpressionsSkip) {
					t.Errorf("summary = %+v", ts)
				}
				if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); !strings.HasPrefix(c.Message, "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 1") {
					t.Errorf("message = %q", c.Message)
				}
				if ev := h.taskRunEvents(); len(ev) != 2 || ev[0] != "Normal Started " || !strings.HasPrefix(ev[1], "Normal Succeeded ") {
					t.Errorf("TaskRun events = %q, want a's Started and Succeeded, none for b", ev)
				}
			},
		}, {
			name: "recorded as skipped, b's never-run TaskRun is deleted, as Tekton makes none",
			want: view{Condition: "True/Succeeded", TaskRuns: map[string]string{"a": "True/Succeeded"}, Pods: pods0,
				Results: []v1beta1.CustomRunResult{{Name: "out", Value: "x"}}},
			check: func(t *testing.T, h *harness) {
				s := observe.DecodeSummary(h.cr().Status.ExtraFields)
				if ts, _ := s.Task(trName("run", "b")); ts.State != plan.PhaseSkipped || ts.Reason != string(v1.WhenExpressionsSkip) || ts.PipelineTaskName != "b" {
					t.Errorf("the summary no longer records b as skipped: %+v", s)
				}
				if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); !strings.HasPrefix(c.Message, "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 1") {
					t.Errorf("message = %q", c.Message)
				}
			},
		}, {
			name: "nothing more to do",
			want: view{Condition: "True/Succeeded", TaskRuns: map[string]string{"a": "True/Succeeded"}, Pods: pods0,
				Results: []v1beta1.CustomRunResult{{Name: "out", Value: "x"}}},
			check: func(t *testing.T, h *harness) {
				if w := h.writes(); w != (writeCount{}) {
					t.Errorf("writes on a done run: %+v", w)
				}
			},
		}},
	}, {
		name:  "finally after failure",
		tasks: []taskDef{taskA, final},
		steps: []step{{
			name: "create",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "f": pending}, Pods: pods0},
		}, {
			name: "a fails, finally runs",
			do: func(h *harness) {
				h.setPod(0, running)
				h.report(0, false, finalState(taskA, plan.PhaseFailed, "Failed", 0, time.Second), runningState(final, time.Second))
			},
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": "False/Failed", "f": unknownRunning}, Pods: pods0},
		}, {
			name: "finally succeeds: the run fails",
			do: func(h *harness) {
				h.report(0, true, finalState(final, plan.PhaseSucceeded, "Succeeded", time.Second, 2*time.Second))
			},
			want: view{Condition: "False/Failed", TaskRuns: map[string]string{"a": "False/Failed", "f": "True/Succeeded"}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				s := observe.DecodeSummary(h.cr().Status.ExtraFields)
				if ts, _ := s.Task(trName("run", "f")); ts.MemberOf != "finally" {
					t.Errorf("summary = %+v", s)
				}
			},
		}},
	}, {
		name:  "cancel",
		tasks: []taskDef{taskA, taskB},
		steps: []step{{
			name: "create and run a",
			do:   func(h *harness) {},
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
		}, {
			name: "a runs",
			do: func(h *harness) {
				h.setPod(0, running)
				h.report(0, false, runningState(taskA, time.Second))
			},
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": unknownRunning, "b": pending}, Pods: pods0},
		}, {
			name: "the PipelineRun times out: Tekton cancels the CustomRun",
			do: func(h *harness) {
				h.updateCR(func(cr *v1beta1.CustomRun) {
					cr.Spec.Status = v1beta1.CustomRunSpecStatusCancelled
					cr.Spec.StatusMessage = v1beta1.CustomRunCancelledByPipelineTimeoutMsg
				})
			},
			want: view{Condition: "False/CustomRunCancelled", TaskRuns: map[string]string{"a": "False/TaskRunCancelled", "b": "False/TaskRunCancelled"}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				c := h.cr().Status.GetCondition(apis.ConditionSucceeded)
				if c.Message != `CustomRun "run" was cancelled. CustomRun cancelled as the PipelineRun it belongs to has timed out.` {
					t.Errorf("message = %q", c.Message)
				}
				tr := h.taskRun("a")
				if tr.Status.Steps[0].Terminated == nil || tr.Status.Steps[0].TerminationReason != "TaskRunCancelled" || tr.Status.PodName != "run-pod" {
					t.Errorf("cancelled TaskRun: %+v", tr.Status.TaskRunStatusFields)
				}
			},
		}, {
			name: "the next reconcile deletes the pod",
			want: view{Condition: "False/CustomRunCancelled", TaskRuns: map[string]string{"a": "False/TaskRunCancelled", "b": "False/TaskRunCancelled"}},
		}},
	}, {
		name:  "cancel before the pod exists",
		tasks: []taskDef{taskA},
		cr:    func(cr *v1beta1.CustomRun) { cr.Spec.Status = v1beta1.CustomRunSpecStatusCancelled },
		steps: []step{{
			name: "nothing is created",
			want: view{Condition: "False/CustomRunCancelled", TaskRuns: map[string]string{}},
		}},
	}, {
		name:  "timeout",
		tasks: []taskDef{taskA, taskB},
		cr:    func(cr *v1beta1.CustomRun) { cr.Spec.Timeout = &metav1.Duration{Duration: time.Minute} },
		steps: []step{{
			name: "create",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				if _, d := controllerRequeue(h); d != DefaultRequeueInterval {
					t.Errorf("requeue after %v", d)
				}
			},
		}, {
			name: "a succeeded, b runs; 59 s: requeued for the timeout",
			do: func(h *harness) {
				h.setPod(0, running)
				h.report(0, false, finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, 10*time.Second), runningState(taskB, 10*time.Second))
				h.clock.SetTime(t0.Add(59 * time.Second))
			},
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": "True/Succeeded", "b": unknownRunning}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				if _, d := controllerRequeue(h); d != 2*time.Second {
					t.Errorf("requeue after %v, want the time left", d)
				}
			},
		}, {
			name: "past the timeout",
			do:   func(h *harness) { h.clock.SetTime(t0.Add(61 * time.Second)) },
			want: view{Condition: "False/CustomRunTimedOut", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "False/TaskRunCancelled"}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); c.Message != `CustomRun "run" failed to finish within "1m0s"` {
					t.Errorf("message = %q", c.Message)
				}
			},
		}, {
			name: "pod deleted",
			want: view{Condition: "False/CustomRunTimedOut", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "False/TaskRunCancelled"}},
		}},
	}, {
		name:  "retry",
		tasks: []taskDef{taskA, taskB},
		cr:    func(cr *v1beta1.CustomRun) { cr.Spec.Retries = 1 },
		steps: []step{{
			name: "create",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
		}, {
			name: "attempt 0 fails",
			do: func(h *harness) {
				h.setPod(0, running)
				h.report(0, true,
					finalState(taskA, plan.PhaseSucceeded, "Succeeded", 0, time.Second),
					finalState(taskB, plan.PhaseFailed, "Failed", time.Second, 2*time.Second))
				h.clock.SetTime(t0.Add(3 * time.Second))
			},
			want: view{Condition: "Unknown/ToBeRetried", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "False/Failed"}, Pods: pods0, Retries: 1},
			check: func(t *testing.T, h *harness) {
				cr := h.cr()
				if c := cr.Status.RetriesStatus[0].GetCondition(apis.ConditionSucceeded); cond(c) != "False/Failed" {
					t.Errorf("retriesStatus[0] = %v", c)
				}
				if !cr.Status.StartTime.Equal(at(3 * time.Second)) {
					t.Errorf("the new attempt's start = %v", cr.Status.StartTime)
				}
			},
		}, {
			name: "attempt 1: a new pod, the TaskRuns start over",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": "Unknown/TaskRunPending", "b": "Unknown/TaskRunPending"},
				Pods: []string{"run-pod", "run-pod-retry1"}, Retries: 1},
			check: func(t *testing.T, h *harness) {
				tr := h.taskRun("b")
				if len(tr.Status.RetriesStatus) != 1 || tr.Status.RetriesStatus[0].PodName != "run-pod" || tr.Status.PodName != "" {
					t.Errorf("TaskRun b after the retry: podName %q retries %+v", tr.Status.PodName, tr.Status.RetriesStatus)
				}
			},
		}, {
			name: "attempt 1 succeeds",
			do: func(h *harness) {
				h.setPod(1, running)
				h.report(1, true,
					finalState(taskA, plan.PhaseSucceeded, "Succeeded", 4*time.Second, 5*time.Second),
					finalState(taskB, plan.PhaseSucceeded, "Succeeded", 5*time.Second, 6*time.Second))
			},
			want: view{Condition: "True/Succeeded", TaskRuns: map[string]string{"a": "True/Succeeded", "b": "True/Succeeded"},
				Pods: []string{"run-pod", "run-pod-retry1"}, Retries: 1},
			check: func(t *testing.T, h *harness) {
				tr := h.taskRun("b")
				if len(tr.Status.RetriesStatus) != 1 || tr.Status.PodName != "run-pod-retry1" || cond(tr.Status.RetriesStatus[0].GetCondition(apis.ConditionSucceeded)) != "False/Failed" {
					t.Errorf("TaskRun b: podName %q retries %+v", tr.Status.PodName, tr.Status.RetriesStatus)
				}
			},
		}},
	}, {
		name:  "pod deleted",
		tasks: []taskDef{taskA, taskB},
		steps: []step{{
			name: "create",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
		}, {
			name: "a runs",
			do: func(h *harness) {
				h.setPod(0, running)
				h.report(0, false, runningState(taskA, time.Second))
			},
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": unknownRunning, "b": pending}, Pods: pods0},
		}, {
			name: "someone deletes the pod",
			do:   func(h *harness) { must(h.t, h.kube.CoreV1().Pods(ns).Delete(h.ctx, "run-pod", metav1.DeleteOptions{})) },
			want: view{Condition: "False/PodDeleted", TaskRuns: map[string]string{"a": "False/PodDeleted", "b": "False/TaskRunCancelled"}},
			check: func(t *testing.T, h *harness) {
				if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); c.Message != `pod "run-pod" was deleted before every task finished; running: a` {
					t.Errorf("message = %q", c.Message)
				}
				if h.prep.calls != 1 {
					t.Error("a deleted pod must not be created again")
				}
			},
		}},
	}, {
		name:  "image pull failure",
		tasks: []taskDef{taskA, taskB},
		steps: []step{{
			name: "create",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending, "b": pending}, Pods: pods0},
		}, {
			name: "b's image cannot be pulled",
			do: func(h *harness) {
				h.setPod(0, func(p *corev1.Pod) {
					p.Status.Phase = corev1.PodPending
					for _, c := range p.Spec.Containers {
						w := &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
						if c.Name == "step-b-s0" {
							w = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "busybox"`}
						}
						p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, State: corev1.ContainerState{Waiting: w}})
					}
				})
			},
			want: view{Condition: "False/TaskRunImagePullFailed", TaskRuns: map[string]string{"a": "False/TaskRunCancelled", "b": "False/TaskRunImagePullFailed"}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				c := h.cr().Status.GetCondition(apis.ConditionSucceeded)
				if !strings.HasPrefix(c.Message, `task "b" (TaskRun "run-b"): the step container "step-b-s0" in TaskRun "run-b" cannot start (image "busybox")`) {
					t.Errorf("message = %q", c.Message)
				}
				tr := h.taskRun("b")
				if len(tr.Status.Steps) != 1 || tr.Status.Steps[0].Terminated == nil {
					t.Errorf("steps of the culprit: %+v", tr.Status.Steps)
				}
			},
		}, {
			name: "the stuck pod is deleted",
			want: view{Condition: "False/TaskRunImagePullFailed", TaskRuns: map[string]string{"a": "False/TaskRunCancelled", "b": "False/TaskRunImagePullFailed"}},
		}},
	}, {
		name:  "unschedulable past the bound",
		tasks: []taskDef{taskA},
		steps: []step{{
			name: "create",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending}, Pods: pods0},
		}, {
			name: "unschedulable for 4 minutes: still waiting",
			do: func(h *harness) {
				h.setPod(0, func(p *corev1.Pod) {
					p.CreationTimestamp = *at(0)
					p.Status.Phase = corev1.PodPending
					p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
						Message: "0/1 nodes are available: 1 Insufficient memory."}}
				})
				h.clock.SetTime(t0.Add(4 * time.Minute))
			},
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"a": pending}, Pods: pods0},
		}, {
			name: "5 minutes: failed",
			do:   func(h *harness) { h.clock.SetTime(t0.Add(5 * time.Minute)) },
			want: view{Condition: "False/PodUnschedulable", TaskRuns: map[string]string{"a": "False/TaskRunCancelled"}, Pods: pods0},
		}},
	}, {
		name:  "sidecars ready",
		tasks: []taskDef{withSC},
		steps: []step{{
			name: "create: the pod waits for its sidecars",
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"svc": pending}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				if _, ok := h.pod(0).Annotations[plan.ReadyAnnotation]; ok {
					t.Error("a pod with sidecars must not start ready")
				}
			},
		}, {
			name: "sidecar running and ready: the pod is marked ready",
			do:   func(h *harness) { h.setPod(0, running) },
			want: view{Condition: unknownRunning, TaskRuns: map[string]string{"svc": pending}, Pods: pods0},
			check: func(t *testing.T, h *harness) {
				if got := h.pod(0).Annotations[plan.ReadyAnnotation]; got != plan.ReadyAnnotationValue {
					t.Errorf("ready annotation = %q", got)
				}
			},
		}},
	}} {
		t.Run(sc.name, func(t *testing.T) {
			cr := newCustomRun("run")
			if sc.cr != nil {
				sc.cr(cr)
			}
			h := newHarness(t, cr, sc.tasks...)
			h.prep.results = sc.results
			for _, s := range sc.steps {
				if s.do != nil {
					s.do(h)
				}
				h.writes()
				h.reconcile()
				if h.lastErr != nil && !h.requeued() {
					t.Fatalf("%s: reconcile: %v", s.name, h.lastErr)
				}
				if diff := cmp.Diff(s.want, h.view()); diff != "" {
					t.Fatalf("%s: (-want +got)\n%s", s.name, diff)
				}
				if s.check != nil {
					s.check(t, h)
				}
			}
		})
	}
}

func controllerRequeue(h *harness) (bool, time.Duration) {
	return controller.IsRequeueKey(h.lastErr)
}

func TestPrepareFailures(t *testing.T) {
	for _, tc := range []struct {
		name, want, message string
		err                 error
		requeue             bool
	}{{
		name: "validation", err: &prepare.Failure{Reason: prepare.ReasonValidationFailed, Err: errors.New("spec.pipelineSpec.tasks[1].matrix: fans out over a result")},
		want: "False/ValidationFailed", message: "spec.pipelineSpec.tasks[1].matrix: fans out over a result",
	}, {
		name: "resolution", err: &prepare.Failure{Reason: prepare.ReasonResolutionFailed, Err: errors.New(`spec.customRef: resolving Pipeline "p": not found`)},
		want: "False/ResolutionFailed", message: `spec.customRef: resolving Pipeline "p": not found`,
	}, {
		name: "remote resolution in progress", err: fmt.Errorf("%w: waiting", prepare.ErrInProgress),
		want: "Unknown/ResolvingPipelineRef", requeue: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newCustomRun("run"), taskA)
			h.prep.err = tc.err
			h.reconcile()
			c := h.cr().Status.GetCondition(apis.ConditionSucceeded)
			if cond(c) != tc.want || (tc.message != "" && c.Message != tc.message) || h.requeued() != tc.requeue {
				t.Errorf("got %s %q (requeue %v), want %s %q (requeue %v)", cond(c), c.Message, h.requeued(), tc.want, tc.message, tc.requeue)
			}
			if p := h.pod(0); p != nil {
				t.Error("a pod was created")
			}
		})
	}
}
