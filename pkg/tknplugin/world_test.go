package tknplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

const testNS = "ns"

var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

// at is t0 plus seconds (fractions allowed).
func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func mt(sec float64) *metav1.Time { t := metav1.NewTime(at(sec).Truncate(time.Second)); return &t }

// fakeLogs is the log source of the tests: lines by pod and container, served from a
// whole second on, as the pods/log API's sinceTime.
type fakeLogs struct {
	mu    sync.Mutex
	lines map[string][]LogLine
	reads int
}

func (f *fakeLogs) add(pod, container string, lines ...LogLine) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lines == nil {
		f.lines = map[string][]LogLine{}
	}
	f.lines[pod+"/"+container] = append(f.lines[pod+"/"+container], lines...)
}

func (f *fakeLogs) Lines(_ context.Context, _, pod, container string, since time.Time) ([]LogLine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	var out []LogLine
	for _, l := range f.lines[pod+"/"+container] {
		if !l.Time.Before(since) {
			out = append(out, l)
		}
	}
	return out, nil
}

func line(sec float64, text string) LogLine { return LogLine{Time: at(sec), Text: text} }

// report is a line of the reporter's log.
func report(sec float64, st plan.TaskState) LogLine {
	b, err := json.Marshal(plan.ReportLine{Task: &st})
	if err != nil {
		panic(err)
	}
	return LogLine{Time: at(sec), Text: string(b)}
}

// world is a cluster holding one CustomRun of PipelineInPod, its child TaskRuns and pods.
type world struct {
	t      *testing.T
	kube   *k8sfake.Clientset
	tekton *tektonfake.Clientset
	logs   *fakeLogs
	name   string
}

func newWorld(t *testing.T, name string) *world {
	w := &world{t: t, kube: k8sfake.NewSimpleClientset(), tekton: tektonfake.NewSimpleClientset(), logs: &fakeLogs{}, name: name}
	cr := &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, UID: types.UID(name + "-uid")},
		Spec: v1beta1.CustomRunSpec{
			CustomRef: &v1beta1.TaskRef{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind, Name: "pipeline"},
		},
	}
	w.create(cr)
	return w
}

func (w *world) clients() *Clients { return &Clients{Kube: w.kube, Tekton: w.tekton, Logs: w.logs} }

func (w *world) create(obj runtime.Object) {
	w.t.Helper()
	var err error
	switch o := obj.(type) {
	case *v1beta1.CustomRun:
		_, err = w.tekton.TektonV1beta1().CustomRuns(testNS).Create(context.Background(), o, metav1.CreateOptions{})
	case *v1.TaskRun:
		_, err = w.tekton.TektonV1().TaskRuns(testNS).Create(context.Background(), o, metav1.CreateOptions{})
	case *corev1.Pod:
		_, err = w.kube.CoreV1().Pods(testNS).Create(context.Background(), o, metav1.CreateOptions{})
	default:
		err = fmt.Errorf("world cannot create a %T", obj)
	}
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) cr() *v1beta1.CustomRun {
	w.t.Helper()
	cr, err := w.tekton.TektonV1beta1().CustomRuns(testNS).Get(context.Background(), w.name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return cr
}

func (w *world) updateCR(f func(*v1beta1.CustomRun)) {
	w.t.Helper()
	cr := w.cr()
	f(cr)
	if _, err := w.tekton.TektonV1beta1().CustomRuns(testNS).UpdateStatus(context.Background(), cr, metav1.UpdateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) pod(attempt int) *corev1.Pod {
	w.t.Helper()
	p, err := w.kube.CoreV1().Pods(testNS).Get(context.Background(), plan.PodName(w.name, attempt), metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

func (w *world) updatePod(attempt int, f func(*corev1.Pod)) {
	w.t.Helper()
	p := w.pod(attempt)
	f(p)
	if _, err := w.kube.CoreV1().Pods(testNS).Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

// task is one task of a test plan.
type task struct {
	name, key string
	steps     []string
	sidecars  []string
}

func (tk task) container(step string) string { return "step-" + tk.key + "-" + step }

// addPod creates the pod of a run attempt for tasks (in plan order) with its plan, its
// init container, its reporter, and (unless noTaskRuns) the child TaskRuns.
func (w *world) addPod(attempt int, tasks ...task) *plan.Plan {
	w.t.Helper()
	p := &plan.Plan{}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: plan.PodName(w.name, attempt), Namespace: testNS,
		Labels: map[string]string{pipeline.CustomRunKey: w.name}}}
	pod.Spec.InitContainers = []corev1.Container{{Name: "step-pip-init"}}
	for _, tk := range tasks {
		pt := plan.Task{Key: tk.key, PipelineTask: tk.name, TaskRun: w.name + "-" + tk.key}
		ts := &v1.TaskSpec{}
		for _, s := range tk.steps {
			pt.Steps = append(pt.Steps, tk.container(s))
			ts.Steps = append(ts.Steps, v1.Step{Name: s})
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: tk.container(s)})
		}
		for _, s := range tk.sidecars {
			pt.Sidecars = append(pt.Sidecars, tk.container(s))
			ts.Sidecars = append(ts.Sidecars, v1.Sidecar{Name: s})
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: tk.container(s)})
		}
		p.Tasks = append(p.Tasks, pt)
		if _, err := w.tekton.TektonV1().TaskRuns(testNS).Get(context.Background(), pt.TaskRun, metav1.GetOptions{}); err != nil {
			w.create(&v1.TaskRun{
				ObjectMeta: metav1.ObjectMeta{Name: pt.TaskRun, Namespace: testNS,
					Labels: map[string]string{pipeline.CustomRunKey: w.name, pipeline.PipelineTaskLabelKey: tk.name}},
				Spec: v1.TaskRunSpec{TaskSpec: ts, Status: v1.TaskRunSpecStatusPending},
			})
		}
	}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: plan.ReporterContainer})
	enc, err := p.Encode()
	if err != nil {
		w.t.Fatal(err)
	}
	pod.Annotations = map[string]string{plan.AnnotationPlan: enc}
	pod.Status.Phase = corev1.PodPending
	w.create(pod)
	w.updateCR(func(cr *v1beta1.CustomRun) {
		if !cr.HasStarted() {
			cr.Status.InitializeConditions()
			cr.Status.StartTime = mt(0)
		}
		raw, err := observe.Summary{PipelineName: "pipeline", PodName: pod.Name}.Encode()
		if err != nil {
			w.t.Fatal(err)
		}
		cr.Status.ExtraFields = raw
	})
	return p
}

// running makes the pod run: its init container done, every container running.
func running(p *corev1.Pod) {
	p.Status.Phase = corev1.PodRunning
	p.Status.InitContainerStatuses = nil
	for _, c := range p.Spec.InitContainers {
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{Name: c.Name,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}})
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
	}
}

// terminate ends the named containers (all when none is named).
func terminate(names ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := range p.Status.ContainerStatuses {
			cs := &p.Status.ContainerStatuses[i]
			if len(names) == 0 || contains(names, cs.Name) {
				cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}
			}
		}
		if len(names) == 0 {
			p.Status.Phase = corev1.PodSucceeded
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// succeed ends the CustomRun.
func succeed(cr *v1beta1.CustomRun) {
	cr.Status.MarkCustomRunSucceeded("Succeeded", "Tasks Completed: 3 (Failed: 0, Cancelled 0), Skipped: 1")
	cr.Status.CompletionTime = mt(9)
}

// stepState is a step of a reported attempt.
func stepState(tk task, step string, start, end float64, exit int32) plan.StepState {
	s := plan.StepState{Name: step, Container: tk.container(step), StartTime: mt(start)}
	if end >= 0 {
		s.CompletionTime, s.ExitCode = mt(end), &exit
		s.Reason = "Completed"
		if exit != 0 {
			s.Reason = "Error"
		}
	}
	return s
}

// env runs commands against a world: Sleep plays the next frame, or fails when none is
// left (a command that should have ended did not).
type testEnv struct {
	out, err bytes.Buffer
	frames   []func()
	sleeps   int
}

var errNoFrames = errors.New("the test has no more frames: the command did not end when the run did")

func (e *testEnv) env(w *world) Env {
	return Env{
		Stdout: &e.out, Stderr: &e.err, Poll: time.Millisecond,
		Connect: func(string, string) (*Clients, string, error) { return w.clients(), testNS, nil },
		Sleep: func(ctx context.Context, _ time.Duration) error {
			if e.sleeps >= len(e.frames) {
				return errNoFrames
			}
			e.frames[e.sleeps]()
			e.sleeps++
			return nil
		},
	}
}

// condition is a Succeeded condition.
func condition(status corev1.ConditionStatus, reason string) apis.Condition {
	return apis.Condition{Type: apis.ConditionSucceeded, Status: status, Reason: reason}
}

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

var deleteNow = metav1.DeleteOptions{}
