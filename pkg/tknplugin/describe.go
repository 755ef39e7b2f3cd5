package tknplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/compile"
	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// Describe prints a run: itself, every child TaskRun (status, reason, start, duration,
// results), the skipped tasks and why, the run's attempts and its pod. It reads the
// CustomRun's summary (status.extraFields), which lists the tasks in the plan's order and
// keeps skipped tasks whose TaskRun was deleted (Tekton has none for them).
func Describe(ctx context.Context, out io.Writer, c *Clients, ns, name string) error {
	cr, err := getRun(ctx, c, ns, name)
	if err != nil {
		return err
	}
	list, err := c.Tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: childSelector(name)})
	if err != nil {
		return fmt.Errorf("listing the TaskRuns of CustomRun %s: %w", name, err)
	}
	summary := observe.DecodeSummary(cr.Status.ExtraFields)
	podName := summary.PodName
	if podName == "" {
		podName = plan.PodName(name, len(cr.Status.RetriesStatus))
	}
	pod, err := c.Kube.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		pod, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("reading pod %s: %w", podName, err)
	}
	d := &describer{w: tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)}
	d.run(cr, summary)
	d.taskRuns(cr, summary, list.Items)
	d.attempts(cr)
	d.pod(podName, pod)
	return d.w.Flush()
}

type describer struct {
	w *tabwriter.Writer
}

func (d *describer) line(format string, args ...any) { fmt.Fprintf(d.w, format+"\n", args...) }

func (d *describer) section(title string) { d.line("\n%s\n", title) }

func (d *describer) run(cr *v1beta1.CustomRun, s observe.Summary) {
	d.line("Name:\t%s", cr.Name)
	d.line("Namespace:\t%s", cr.Namespace)
	if s.PipelineName != "" {
		d.line("Pipeline:\t%s", s.PipelineName)
	}
	if outer := cr.Labels[pipeline.PipelineRunLabelKey]; outer != "" {
		d.line("PipelineRun:\t%s (pipeline task %s)", outer, cr.Labels[pipeline.PipelineTaskLabelKey])
	}
	if cr.Spec.ServiceAccountName != "" {
		d.line("Service Account:\t%s", cr.Spec.ServiceAccountName)
	}
	if cr.Spec.Timeout != nil {
		d.line("Timeout:\t%s", cr.Spec.Timeout.Duration)
	}
	status, reason := conditionOf(cr.Status.Conditions)
	d.section("Status")
	d.line("STARTED\tDURATION\tSTATUS\tREASON")
	d.line("%s\t%s\t%s\t%s", timeOf(cr.Status.StartTime), duration(cr.Status.StartTime, cr.Status.CompletionTime), status, reason)
	if c := cr.Status.GetCondition(apis.ConditionSucceeded); c != nil && c.Message != "" {
		d.section("Message")
		d.line("%s", c.Message)
	}
	if len(cr.Spec.Params) > 0 {
		d.section("Params")
		d.line(" NAME\tVALUE")
		for _, p := range cr.Spec.Params {
			d.line(" %s\t%s", p.Name, valueOf(p.Value.Type, p.Value.StringVal, p.Value))
		}
	}
	if len(cr.Spec.Workspaces) > 0 {
		d.section("Workspaces")
		d.line(" NAME\tSUB PATH\tWORKSPACE BINDING")
		for _, w := range cr.Spec.Workspaces {
			d.line(" %s\t%s\t%s", w.Name, orDash(w.SubPath), binding(w))
		}
	}
	if len(cr.Status.Results) > 0 {
		d.section("Results")
		d.line(" NAME\tVALUE")
		for _, r := range cr.Status.Results {
			d.line(" %s\t%s", r.Name, r.Value)
		}
	}
}

// taskRuns lists the child TaskRuns in the plan's order, then the skipped tasks.
func (d *describer) taskRuns(cr *v1beta1.CustomRun, s observe.Summary, items []v1.TaskRun) {
	byName := map[string]*v1.TaskRun{}
	var names []string
	for i := range items {
		byName[items[i].Name] = &items[i]
		names = append(names, items[i].Name)
	}
	sort.Strings(names)
	var order []string
	listed := map[string]bool{}
	var skipped []v1.SkippedTask
	for _, ts := range s.TaskRuns {
		listed[ts.Name] = true
		if tr := byName[ts.Name]; ts.State == plan.PhaseSkipped && (tr == nil || tr.Status.StartTime == nil) {
			// Tekton has no TaskRun for a skipped task; ours goes once this is recorded.
			skipped = append(skipped, v1.SkippedTask{Name: ts.PipelineTaskName, Reason: v1.SkippingReason(ts.Reason)})
			continue
		}
		order = append(order, ts.Name)
	}
	for _, n := range names {
		if !listed[n] {
			order = append(order, n)
		}
	}
	skipped = append(skipped, s.SkippedTasks...)

	d.section("TaskRuns")
	if len(order) == 0 {
		d.line(" No TaskRuns")
	} else {
		d.line(" NAME\tTASK\tSTARTED\tDURATION\tSTATUS\tREASON\tRETRIES")
	}
	var results [][3]string
	for _, n := range order {
		tr := byName[n]
		ts, _ := s.Task(n)
		if tr == nil {
			d.line(" %s\t%s\t---\t---\tGone\t%s\t---", n, ts.PipelineTaskName, ts.Reason)
			continue
		}
		status, reason := conditionOf(tr.Status.Conditions)
		// No status yet: created, not started (spec.status TaskRunPending or not).
		if len(tr.Status.Conditions) == 0 {
			status = "Pending"
		}
		task := tr.Labels[pipeline.PipelineTaskLabelKey]
		if i, ok := tr.Labels[compile.MatrixIndexLabel]; ok {
			task += "[" + i + "]"
		}
		d.line(" %s\t%s\t%s\t%s\t%s\t%s\t%d", n, task, timeOf(tr.Status.StartTime), duration(tr.Status.StartTime, tr.Status.CompletionTime),
			status, reason, len(tr.Status.RetriesStatus))
		for _, r := range tr.Status.Results {
			results = append(results, [3]string{n, r.Name, valueOf(r.Value.Type, r.Value.StringVal, r.Value)})
		}
	}
	if len(results) > 0 {
		d.section("TaskRun Results")
		d.line(" TASKRUN\tNAME\tVALUE")
		for _, r := range results {
			d.line(" %s\t%s\t%s", r[0], r[1], r[2])
		}
	}
	if len(skipped) > 0 {
		d.section("Skipped Tasks")
		d.line(" NAME\tREASON")
		for _, sk := range skipped {
			d.line(" %s\t%s", sk.Name, sk.Reason)
		}
	}
}

// attempts lists the run's attempts (a CustomRun retry is a new pod) when it has several.
func (d *describer) attempts(cr *v1beta1.CustomRun) {
	if len(cr.Status.RetriesStatus) == 0 {
		return
	}
	d.section("Attempts")
	d.line(" ATTEMPT\tPOD\tSTARTED\tDURATION\tSTATUS\tREASON")
	for n := 0; n <= len(cr.Status.RetriesStatus); n++ {
		st := attemptStatus(cr, n)
		status, reason := conditionOf(st.Conditions)
		d.line(" %d\t%s\t%s\t%s\t%s\t%s", n, plan.PodName(cr.Name, n), timeOf(st.StartTime), duration(st.StartTime, st.CompletionTime), status, reason)
	}
}

func (d *describer) pod(name string, pod *corev1.Pod) {
	d.section("Pod")
	if pod == nil {
		d.line(" %s\t(none)", name)
		return
	}
	states := map[string]int{}
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Terminated != nil:
			states["terminated"]++
		case cs.State.Running != nil:
			states["running"]++
		default:
			states["waiting"]++
		}
	}
	var counts []string
	for _, s := range []string{"running", "waiting", "terminated"} {
		if states[s] > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", states[s], s))
		}
	}
	d.line(" NAME\tPHASE\tNODE\tCONTAINERS")
	d.line(" %s\t%s\t%s\t%d (%s)", pod.Name, pod.Status.Phase, orDash(pod.Spec.NodeName), len(pod.Spec.Containers), orDash(strings.Join(counts, ", ")))
	if pod.Status.Message != "" {
		d.line(" %s: %s", pod.Status.Reason, pod.Status.Message)
	}
}

// conditionOf tells a Succeeded condition the way tkn does (Succeeded, Failed,
// Cancelled, Running or Pending), and its reason; a TaskRun that ran in an earlier
// attempt and was skipped in this one is Skipped.
func conditionOf(conds duckv1.Conditions) (string, string) {
	var c *apis.Condition
	for i := range conds {
		if conds[i].Type == apis.ConditionSucceeded {
			c = &conds[i]
		}
	}
	if c == nil {
		return "---", ""
	}
	status := "Running"
	switch {
	case c.IsTrue():
		status = "Succeeded"
	case c.IsFalse() && c.Reason == observe.ReasonTaskRunSkipped:
		status = "Skipped"
	case c.IsFalse() && strings.HasSuffix(c.Reason, "Cancelled"):
		status = "Cancelled"
	case c.IsFalse():
		status = "Failed"
	case strings.HasSuffix(c.Reason, "Pending"):
		status = "Pending"
	}
	return status, c.Reason
}

func timeOf(t *metav1.Time) string {
	if t == nil {
		return "---"
	}
	return t.UTC().Format(time.RFC3339)
}

func duration(start, end *metav1.Time) string {
	if start == nil || end == nil {
		return "---"
	}
	return end.Sub(start.Time).Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "---"
	}
	return s
}

// valueOf shows a param or result value (v1 or v1beta1): a string as it is, an array or
// object as JSON.
func valueOf[T ~string](typ T, str string, v any) string {
	if typ == "" || string(typ) == string(v1.ParamTypeString) {
		return str
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// binding names what backs a workspace (tkn's `customrun describe` fails on a CustomRun's
// workspaces, whose type is v1beta1's).
func binding(w v1beta1.WorkspaceBinding) string {
	switch {
	case w.EmptyDir != nil:
		return "EmptyDir (emptyDir=" + string(w.EmptyDir.Medium) + ")"
	case w.PersistentVolumeClaim != nil:
		return "PersistentVolumeClaim (claimName=" + w.PersistentVolumeClaim.ClaimName + ")"
	case w.VolumeClaimTemplate != nil:
		return "VolumeClaimTemplate"
	case w.ConfigMap != nil:
		return "ConfigMap (config=" + w.ConfigMap.Name + ")"
	case w.Secret != nil:
		return "Secret (secret=" + w.Secret.SecretName + ")"
	case w.Projected != nil:
		return "Projected"
	case w.CSI != nil:
		return "CSI (driver=" + w.CSI.Driver + ")"
	}
	return "---"
}
