package tknplugin

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// LogOptions select what Logs prints.
type LogOptions struct {
	// Follow a live run until it ends.
	Follow bool
	// All adds the pod's init containers (shared by every task, shown as task "pod") and
	// each task's sidecars. The reporter's log, which is the controller's, never shows.
	All bool
	// Tasks are the pipeline tasks to show; none: all.
	Tasks []string
}

// initTask labels the pod's own init containers, which belong to no one task.
const initTask = "pod"

// Logs prints each task's step logs, tasks in the plan's order (the DAG's topological
// order, then finally), a retried task's attempts one after the other, each line
// "[task : step] line" as `tkn pipelinerun logs` prints it, and a blank line after each
// step. With Follow it prints a task as it runs, then the next, until the run ends. It
// returns the CustomRun as last seen.
func Logs(ctx context.Context, env Env, c *Clients, ns, name string, o LogOptions) (*v1beta1.CustomRun, error) {
	cr, err := getRun(ctx, c, ns, name)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		a := &attemptLogs{c: c, ns: ns, name: name, attempt: attempt, pod: plan.PodName(name, attempt), opts: o, out: env.Stdout, errOut: env.Stderr,
			consumed: map[string]int{}, logs: map[string]*containerLog{}, states: map[string]plan.TaskState{}, retryAt: map[string][]time.Time{}}
		for {
			done, err := a.pass(ctx, cr)
			if err != nil {
				return cr, err
			}
			if done {
				break
			}
			if err := env.Sleep(ctx, env.Poll); err != nil {
				return cr, err
			}
			if cr, err = getRun(ctx, c, ns, name); err != nil {
				return nil, err
			}
		}
		for o.Follow && !attemptOver(cr, attempt) {
			if err := env.Sleep(ctx, env.Poll); err != nil {
				return cr, err
			}
			if cr, err = getRun(ctx, c, ns, name); err != nil {
				return nil, err
			}
		}
		if attempt >= len(cr.Status.RetriesStatus) {
			break
		}
	}
	if c := cr.Status.GetCondition(apis.ConditionSucceeded); c != nil && c.IsFalse() {
		fmt.Fprintf(env.Stderr, "CustomRun %s failed (%s): %s\n", cr.Name, c.Reason, c.Message)
	}
	return cr, nil
}

// getRun reads a CustomRun of PipelineInPod.
func getRun(ctx context.Context, c *Clients, ns, name string) (*v1beta1.CustomRun, error) {
	cr, err := c.Tekton.TektonV1beta1().CustomRuns(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("CustomRun %s in namespace %s: %w", name, ns, err)
	}
	if !v1alpha1.IsPipelineInPod(cr) {
		return nil, fmt.Errorf("CustomRun %s in namespace %s is not a %s run", name, ns, v1alpha1.Kind)
	}
	return cr, nil
}

// attemptOver tells whether run attempt n of the CustomRun (its pod) will not change:
// the run is done, or went on to a later attempt.
func attemptOver(cr *v1beta1.CustomRun, n int) bool {
	return cr.IsDone() || len(cr.Status.RetriesStatus) > n
}

// attemptStatus is the status of run attempt n: an archived one, or the current.
func attemptStatus(cr *v1beta1.CustomRun, n int) *v1beta1.CustomRunStatus {
	if n < len(cr.Status.RetriesStatus) {
		return &cr.Status.RetriesStatus[n]
	}
	return &cr.Status
}

// hadPod tells whether run attempt n got a pod (the summary records it once created).
func hadPod(cr *v1beta1.CustomRun, n int) bool {
	return observe.DecodeSummary(attemptStatus(cr, n).ExtraFields).PodName != ""
}

// attemptLogs prints the logs of one run attempt's pod, over one or more passes.
type attemptLogs struct {
	c            *Clients
	ns, name     string
	attempt      int
	pod          string
	opts         LogOptions
	out, errOut  io.Writer
	plan         *plan.Plan
	tasks        []*taskCursor
	stepNames    map[string]string // container → step name, from the child TaskRuns
	initDone     bool
	logs         map[string]*containerLog
	consumed     map[string]int // container → lines printed
	fresh        map[string]bool
	reportSeen   int
	states       map[string]plan.TaskState
	retryAt      map[string][]time.Time // task key → when the reporter first showed attempt k+1
	podNow       *corev1.Pod
	sectionLines int
}

// pass prints what can be printed now of the run as cr says it is, and tells whether the
// attempt is done. Without Follow, or once the attempt will not change any more (final),
// it prints everything there is and finishes.
func (a *attemptLogs) pass(ctx context.Context, cr *v1beta1.CustomRun) (bool, error) {
	over := attemptOver(cr, a.attempt)
	final := !a.opts.Follow || over
	a.fresh = map[string]bool{}
	pod, err := a.c.Kube.CoreV1().Pods(a.ns).Get(ctx, a.pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		switch {
		case final && hadPod(cr, a.attempt):
			fmt.Fprintf(a.errOut, "pod %s of CustomRun %s (attempt %d) is gone, and its logs with it\n", a.pod, a.name, a.attempt)
		case !a.opts.Follow && !over:
			fmt.Fprintf(a.errOut, "CustomRun %s has no pod yet (-f waits for it)\n", a.name)
		}
		return final, nil
	}
	if err != nil {
		return false, err
	}
	a.podNow = pod
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil {
		final = true
	}
	if a.plan == nil {
		if err := a.readPlan(ctx, pod); err != nil {
			return false, err
		}
	}
	if a.opts.All && !a.initDone {
		if !final && !initsOver(pod) {
			return false, nil
		}
		for _, ic := range pod.Spec.InitContainers {
			if err := a.print(ctx, initTask, strings.TrimPrefix(ic.Name, "step-"), ic.Name, time.Time{}); err != nil {
				return false, err
			}
			a.endSection()
		}
		a.initDone = true
	}
	if err := a.readReport(ctx); err != nil {
		return false, err
	}
	for _, t := range a.tasks {
		if err := t.advance(ctx, a, final); err != nil {
			return false, err
		}
		if !t.done {
			return false, nil
		}
	}
	return true, nil
}

// readPlan takes the attempt's tasks from its pod's plan, the one record of which
// containers are which task's, in order.
func (a *attemptLogs) readPlan(ctx context.Context, pod *corev1.Pod) error {
	raw, ok := pod.Annotations[plan.AnnotationPlan]
	if !ok {
		return fmt.Errorf("pod %s has no %s annotation: not a %s pod", pod.Name, plan.AnnotationPlan, v1alpha1.Kind)
	}
	p, err := plan.Decode([]byte(raw))
	if err != nil {
		return fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	want := map[string]bool{}
	for _, n := range a.opts.Tasks {
		want[n] = true
	}
	var names []string
	seen := map[string]bool{}
	for i := range p.Tasks {
		t := &p.Tasks[i]
		if !seen[t.PipelineTask] {
			seen[t.PipelineTask] = true
			names = append(names, t.PipelineTask)
		}
		if len(want) == 0 || want[t.PipelineTask] {
			a.tasks = append(a.tasks, &taskCursor{task: t})
		}
	}
	for _, n := range a.opts.Tasks {
		if !seen[n] {
			return fmt.Errorf("CustomRun %s has no pipeline task %q; its tasks: %s", a.name, n, strings.Join(names, ", "))
		}
	}
	a.plan = p
	a.stepNames = map[string]string{}
	trs, err := a.c.Tekton.TektonV1().TaskRuns(a.ns).List(ctx, metav1.ListOptions{LabelSelector: childSelector(a.name)})
	if err != nil {
		return fmt.Errorf("listing the TaskRuns of CustomRun %s: %w", a.name, err)
	}
	byName := map[string]*v1.TaskRun{}
	for i := range trs.Items {
		byName[trs.Items[i].Name] = &trs.Items[i]
	}
	for _, t := range p.Tasks {
		tr := byName[t.TaskRun]
		if tr == nil || tr.Spec.TaskSpec == nil {
			continue
		}
		for i, c := range t.Steps {
			if i < len(tr.Spec.TaskSpec.Steps) && tr.Spec.TaskSpec.Steps[i].Name != "" {
				a.stepNames[c] = tr.Spec.TaskSpec.Steps[i].Name
			}
		}
		for i, c := range t.Sidecars {
			if i < len(tr.Spec.TaskSpec.Sidecars) && tr.Spec.TaskSpec.Sidecars[i].Name != "" {
				a.stepNames[c] = tr.Spec.TaskSpec.Sidecars[i].Name
			}
		}
	}
	return nil
}

// readReport folds the reporter's new lines into the tasks' states, noting when each
// retry of a task first showed.
func (a *attemptLogs) readReport(ctx context.Context) error {
	if !a.started(plan.ReporterContainer) {
		return nil
	}
	l, err := a.read(ctx, plan.ReporterContainer)
	if err != nil {
		return err
	}
	for ; a.reportSeen < len(l.lines); a.reportSeen++ {
		line := l.lines[a.reportSeen]
		states, _, err := a.plan.ReadReport(strings.NewReader(line.Text))
		if err != nil {
			return err
		}
		for key, st := range states {
			for k := len(a.retryAt[key]); k < st.RetryCount; k++ {
				a.retryAt[key] = append(a.retryAt[key], line.Time)
			}
			a.states[key] = st
		}
	}
	return nil
}

// started tells whether a container has a log to read.
func (a *attemptLogs) started(name string) bool {
	for _, cs := range append(append([]corev1.ContainerStatus{}, a.podNow.Status.InitContainerStatuses...), a.podNow.Status.ContainerStatuses...) {
		if cs.Name == name {
			return cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil
		}
	}
	return false
}

func (a *attemptLogs) terminated(names ...string) bool {
	status := map[string]corev1.ContainerStatus{}
	for _, cs := range a.podNow.Status.ContainerStatuses {
		status[cs.Name] = cs
	}
	for _, n := range names {
		if cs, ok := status[n]; !ok || cs.State.Terminated == nil {
			return false
		}
	}
	return true
}

func initsOver(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.InitContainerStatuses {
		if cs.State.Terminated == nil {
			return false
		}
	}
	return len(pod.Status.InitContainerStatuses) == len(pod.Spec.InitContainers)
}

// read brings a container's log up to date, once per pass.
func (a *attemptLogs) read(ctx context.Context, container string) (*containerLog, error) {
	l := a.logs[container]
	if l == nil {
		l = &containerLog{}
		a.logs[container] = l
	}
	if a.fresh[container] || !a.started(container) {
		return l, nil
	}
	if err := l.refresh(ctx, a.c.Logs, a.ns, a.pod, container); err != nil {
		return nil, err
	}
	a.fresh[container] = true
	return l, nil
}

// print prints a container's lines not printed yet, up to (not including) until when set.
func (a *attemptLogs) print(ctx context.Context, task, step, container string, until time.Time) error {
	l, err := a.read(ctx, container)
	if err != nil {
		return err
	}
	for ; a.consumed[container] < len(l.lines); a.consumed[container]++ {
		line := l.lines[a.consumed[container]]
		if !until.IsZero() && !line.Time.Before(until) {
			break
		}
		if _, err := fmt.Fprintf(a.out, "[%s : %s] %s\n", task, step, line.Text); err != nil {
			return err
		}
		a.sectionLines++
	}
	return nil
}

// endSection ends one step's lines with a blank line, as tkn does.
func (a *attemptLogs) endSection() {
	if a.sectionLines > 0 {
		fmt.Fprintln(a.out)
	}
	a.sectionLines = 0
}

// stepName is a container's step name: the one the step reported, else its TaskRun's.
func (a *attemptLogs) stepName(st *plan.TaskState, container string) string {
	if st != nil {
		if s := stepIn(st, container); s != nil && s.Name != "" {
			return s.Name
		}
	}
	if n, ok := a.stepNames[container]; ok {
		return n
	}
	return strings.TrimPrefix(container, "step-")
}

func stepIn(st *plan.TaskState, container string) *plan.StepState {
	for i := range st.Steps {
		if st.Steps[i].Container == container {
			return &st.Steps[i]
		}
	}
	return nil
}

// attemptState is attempt k of a task as reported: an archived attempt, or the latest.
func attemptState(st *plan.TaskState, k int) *plan.TaskState {
	if k < len(st.Attempts) {
		return &st.Attempts[k]
	}
	return st
}

// boundary is the time before which a container's lines belong to attempt k of its task
// (or an earlier one): a retry runs the steps again in the same containers, one attempt
// after the other. Attempt k's lines in the container all precede the end of its step,
// reported in whole seconds (E), and the moment the reporter showed the retry (the
// leader publishes it after attempt k's steps all ended); the boundary is the earlier of
// the second after E and that moment. When attempt k+1 started the step in a later
// second than E, no line of it comes before; within E's second, one written before the
// reporter showed the retry would show with attempt k.
func (a *attemptLogs) boundary(key string, st *plan.TaskState, k int, container string) time.Time {
	var b time.Time
	if k < len(a.retryAt[key]) {
		b = a.retryAt[key][k]
	}
	if s := stepIn(attemptState(st, k), container); s != nil && s.CompletionTime != nil {
		if after := s.CompletionTime.Truncate(time.Second).Add(time.Second); b.IsZero() || after.Before(b) {
			b = after
		}
	}
	if b.IsZero() {
		// Nothing tells the attempts apart: the lines stay with the later one.
		return time.Unix(0, 1)
	}
	return b
}

// taskCursor walks one task's logs: attempt k, step i.
type taskCursor struct {
	task *plan.Task
	k, i int
	done bool
}

// advance prints what the task has to show now; done once it has shown everything.
func (t *taskCursor) advance(ctx context.Context, a *attemptLogs, final bool) error {
	key, name := t.task.Key, t.task.PipelineTask
	for !t.done {
		got, ok := a.states[key]
		if !ok || got.Phase == "" || got.Phase == plan.PhasePending {
			t.done = final
			return nil
		}
		st := &got
		if st.Phase == plan.PhaseSkipped {
			// Never ran: nothing to show, as Tekton has no TaskRun to show.
			t.done = true
			return nil
		}
		if t.k < st.RetryCount {
			if t.i < len(t.task.Steps) {
				c := t.task.Steps[t.i]
				if err := a.print(ctx, name, a.stepName(attemptState(st, t.k), c), c, a.boundary(key, st, t.k, c)); err != nil {
					return err
				}
				a.endSection()
				t.i++
				continue
			}
			t.k, t.i = t.k+1, 0
			continue
		}
		if t.i < len(t.task.Steps) {
			c := t.task.Steps[t.i]
			if err := a.print(ctx, name, a.stepName(st, c), c, time.Time{}); err != nil {
				return err
			}
			if s := stepIn(st, c); !final && !st.Phase.IsTerminal() && (s == nil || s.CompletionTime == nil) {
				return nil
			}
			a.endSection()
			t.i++
			continue
		}
		if !st.Phase.IsTerminal() {
			t.done = final
			return nil
		}
		if !final && !a.terminated(append(append([]string{}, t.task.Steps...), t.task.Sidecars...)...) {
			// The task's containers exit once it is final; then their logs are whole.
			return nil
		}
		// Whatever reached a step's log after its step was shown as ended.
		for _, c := range t.task.Steps {
			if err := a.print(ctx, name, a.stepName(st, c), c, time.Time{}); err != nil {
				return err
			}
			a.endSection()
		}
		if a.opts.All {
			for _, c := range t.task.Sidecars {
				if err := a.print(ctx, name, a.stepName(nil, c), c, time.Time{}); err != nil {
					return err
				}
				a.endSection()
			}
		}
		t.done = true
	}
	return nil
}

// childSelector selects a CustomRun's child TaskRuns (compile labels them so).
func childSelector(customRun string) string {
	return pipeline.CustomRunKey + "=" + customRun
}
