// Package compile is the second stage of a PipelineInPod run: it turns a resolved
// Pipeline and the CustomRun's params and workspaces into the list of child TaskRuns
// one pod will run, with the order between them.
//
// It does what Tekton's PipelineRun reconciler does before it creates TaskRuns
// (validation, param and context substitution, matrix fan-out, the DAG), with Tekton's
// own functions, but all at once: in one pod every task exists from the start, so
// whatever is only known at run time (results, task statuses, retry counts) stays a
// $(...) reference for the in-pod entrypoint to substitute (docs/design.md hazard 4).
package compile

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"knative.dev/pkg/kmeta"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/resolve"
)

// Compiled is a Pipeline ready to be built into one pod.
type Compiled struct {
	// taskRunStatus is the child TaskRuns' spec.status at creation (TaskRunSpecStatus).
	taskRunStatus v1.TaskRunSpecStatus

	CustomRun    *v1beta1.CustomRun
	PipelineName string
	// Results is the Pipeline's results spec, still referring to task results.
	Results []v1.PipelineResult
	// Tasks are the child TaskRuns to create, DAG tasks in a topological order, then finally.
	Tasks []Task
	// Skipped are PipelineTasks known to be skipped before anything runs (a matrix over
	// an empty array): they get no TaskRun, only a line in the CustomRun's status.
	Skipped []Skipped
	// Workspaces are the pipeline's workspace bindings, in the order of the pod volumes
	// that back them; volumeClaimTemplates are already turned into claims (see PVCs).
	Workspaces []Workspace
	// ServiceAccountName and PodTemplate are the one pod's (docs/design.md hazard 8).
	ServiceAccountName string
	PodTemplate        *pod.PodTemplate
	Timeouts           *v1.TimeoutFields
}

// Task is one child TaskRun with its place in the pod's schedule.
type Task struct {
	plan.Task
	// TaskName is the referenced Task's name ("" for an inline taskSpec), for $(context.task.name).
	TaskName string
	// TaskRun is the child TaskRun as it will be created.
	TaskRun *v1.TaskRun
	// WorkspaceVolumes maps each of the TaskRun's workspace bindings to the pod volume of
	// the pipeline workspace it binds, so tasks sharing a workspace share a volume.
	WorkspaceVolumes map[string]string
}

// Skipped is a PipelineTask that will not run at all.
type Skipped struct {
	PipelineTask string
	Finally      bool
	Reason       v1.SkippingReason
}

// Workspace is a pipeline workspace bound to a pod volume.
type Workspace struct {
	Name    string
	Volume  string
	Binding v1.WorkspaceBinding
	// ClaimTemplate, if set, is the PVC to create (owned by the CustomRun) for a
	// volumeClaimTemplate binding; Binding then refers to it by claimName.
	ClaimTemplate *v1.WorkspaceBinding
	ClaimName     string
}

// ReasonError is a compile error for which Tekton's PipelineRun reconciler fails a run
// with a reason of its own (CELEvaluationFailed, InvalidMatrixParameterTypes) rather
// than a validation failure.
type ReasonError struct {
	Reason string
	Err    error
}

func (e *ReasonError) Error() string { return e.Err.Error() }
func (e *ReasonError) Unwrap() error { return e.Err }

// Compile validates a resolved Pipeline against the CustomRun and what one pod can
// honour, and lays out its child TaskRuns.
func Compile(ctx context.Context, cr *v1beta1.CustomRun, r *resolve.Resolved) (*Compiled, error) {
	if err := validateRunName(cr); err != nil {
		return nil, err
	}
	pr := r.PipelineRun.DeepCopy()
	ps := r.Spec.DeepCopy()
	if err := validate(ctx, ps, pr); err != nil {
		return nil, err
	}
	c := &Compiled{
		CustomRun:          cr,
		PipelineName:       r.PipelineName,
		ServiceAccountName: pr.Spec.TaskRunTemplate.ServiceAccountName,
		PodTemplate:        pr.Spec.TaskRunTemplate.PodTemplate,
		Timeouts:           pr.Spec.Timeouts,
		taskRunStatus:      TaskRunSpecStatus(ctx),
	}
	if c.ServiceAccountName == "" {
		c.ServiceAccountName = "default"
	}
	c.bindWorkspaces(pr)
	ps, err := substitutePipeline(ps, pr, r.PipelineName)
	if err != nil {
		return nil, err
	}
	rw, err := rewriteRefs(r, ps, "")
	if err != nil {
		return nil, err
	}
	c.Results = rw.Results
	if err := c.addPipeline(ctx, &scope{resolved: r, run: pr, field: "spec.pipelineSpec"}, ps, nil); err != nil {
		return nil, err
	}
	keys := sets.New[string]()
	for _, t := range c.Tasks {
		if keys.Has(t.Key) {
			return nil, fmt.Errorf("spec.pipelineSpec.tasks: two tasks map to the pod name %q; rename one", t.Key)
		}
		keys.Insert(t.Key)
	}
	return c, nil
}

// validate runs the checks Tekton's PipelineRun reconciler runs before it creates
// anything, then the ones a single pod adds.
func validate(ctx context.Context, ps *v1.PipelineSpec, pr *v1.PipelineRun) error {
	for _, check := range []struct {
		field string
		err   error
	}{
		{"spec.params", prresources.ValidateParamTypesMatching(ps, pr)},
		{"spec.params", prresources.ValidateRequiredParametersProvided(&ps.Params, &pr.Spec.Params)},
		{"spec.params", prresources.ValidateObjectParamRequiredKeys(ps.Params, pr.Spec.Params)},
		{"spec.workspaces", prresources.ValidateWorkspaceBindings(ps, pr)},
		{"spec.customSpec.spec.taskRunSpecs", prresources.ValidateTaskRunSpecs(ps, pr)},
	} {
		if check.err != nil {
			return fmt.Errorf("%s: %w", check.field, check.err)
		}
	}
	if err := prresources.ValidateParamArrayIndex(ps, pr.Spec.Params); err != nil {
		return fmt.Errorf("spec.params: %w", err)
	}
	// One pod has one service account and one pod template (docs/design.md hazard 8).
	for i, trs := range pr.Spec.TaskRunSpecs {
		f := fmt.Sprintf("spec.customSpec.spec.taskRunSpecs[%d]", i)
		if trs.ServiceAccountName != "" && trs.ServiceAccountName != pr.Spec.TaskRunTemplate.ServiceAccountName {
			return fmt.Errorf("%s.serviceAccountName: %q differs from the run's service account %q, and all tasks share one pod", f, trs.ServiceAccountName, pr.Spec.TaskRunTemplate.ServiceAccountName)
		}
		if trs.PodTemplate != nil && !equality.Semantic.DeepEqual(pod.MergePodTemplateWithDefault(trs.PodTemplate, pr.Spec.TaskRunTemplate.PodTemplate), pr.Spec.TaskRunTemplate.PodTemplate) {
			return fmt.Errorf("%s.podTemplate: task %q asks for a pod template of its own, and all tasks share one pod", f, trs.PipelineTaskName)
		}
	}
	return nil
}

// substitutePipeline applies what is known before the run: params, contexts and
// workspace bindings, as Tekton's PipelineRun reconciler does.
func substitutePipeline(ps *v1.PipelineSpec, pr *v1.PipelineRun, name string) (*v1.PipelineSpec, error) {
	if err := ExpansionFits("spec.params", ps, pr.Spec.Params, ps.Params); err != nil {
		return nil, err
	}
	ps, err := prresources.ApplyParameters(ps, pr)
	if err != nil {
		return nil, fmt.Errorf("spec.params: %w", err)
	}
	ps = prresources.ApplyContexts(ps, name, pr)
	ps = prresources.ApplyWorkspaces(ps, pr)
	return ps, nil
}

// bindWorkspaces gives every bound pipeline workspace a pod volume. A
// volumeClaimTemplate becomes one PVC per run, as Tekton makes one per PipelineRun.
func (c *Compiled) bindWorkspaces(pr *v1.PipelineRun) {
	for i, wb := range pr.Spec.Workspaces {
		w := Workspace{Name: wb.Name, Volume: fmt.Sprintf("ws-%d", i), Binding: *wb.DeepCopy()}
		if wb.VolumeClaimTemplate != nil {
			w.ClaimTemplate = wb.DeepCopy()
			w.ClaimName = kmeta.ChildName(c.CustomRun.Name, "-"+wb.Name)
			w.Binding.VolumeClaimTemplate = nil
			w.Binding.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: w.ClaimName}
		}
		c.Workspaces = append(c.Workspaces, w)
	}
}

func (c *Compiled) workspace(name string) *Workspace {
	for i := range c.Workspaces {
		if c.Workspaces[i].Name == name {
			return &c.Workspaces[i]
		}
	}
	return nil
}

// scope is one Pipeline being laid out: the run's own, or a pipelines-in-pipelines child
// flattened into the same pod, whose tasks get keys under prefix.
type scope struct {
	resolved *resolve.Resolved
	run      *v1.PipelineRun
	prefix   string
	field    string // the spec field that errors about this Pipeline name
	// workspaces are, in a child pipeline, its workspaces as the run's own pipeline
	// workspaces they are bound to through every enclosing pipeline task, with the
	// sub-paths those bindings add; nil in the run's own pipeline.
	workspaces map[string]scopeWorkspace
}

// scopeWorkspace is a child pipeline's workspace as a workspace of the run's pipeline.
type scopeWorkspace struct{ name, subPath string }

// workspace is the run's pipeline workspace that this Pipeline's workspace name is.
func (s *scope) workspace(name string) (scopeWorkspace, bool) {
	if s.workspaces == nil {
		return scopeWorkspace{name: name}, true
	}
	w, ok := s.workspaces[name]
	return w, ok
}

// childScope binds a child pipeline's workspaces the way Tekton binds a child
// PipelineRun's: each to the parent workspace its pipeline task names, the pipeline
// task's subPath added to the parent binding's.
func childScope(parent *scope, pt v1.PipelineTask, child *resolve.Resolved, run *v1.PipelineRun) *scope {
	prefix := childPrefix(parent.prefix, pt.Name)
	ws := map[string]scopeWorkspace{}
	for _, b := range pt.Workspaces {
		outer := b.Workspace
		if outer == "" {
			outer = b.Name
		}
		if pw, ok := parent.workspace(outer); ok {
			ws[b.Name] = scopeWorkspace{name: pw.name, subPath: combinedSubPath(pw.subPath, b.SubPath)}
		}
	}
	return &scope{resolved: child, run: run, prefix: prefix, field: fmt.Sprintf("pipeline task %q", strings.TrimSuffix(prefix, "-")), workspaces: ws}
}

// slot is a PipelineTask with its place in the pod's schedule.
type slot struct {
	pt      v1.PipelineTask
	finally bool
	after   []string // keys of the plan tasks it waits for
	// tasksStatus: see plan.Task.TasksStatus.
	tasksStatus *plan.TasksStatusScope
}

// addPipeline lays out one Pipeline's tasks. A pipelines-in-pipelines task is flattened
// into the same pod: its tasks get keys under the parent task's key and wait for what
// the parent task waited for (entry).
func (c *Compiled) addPipeline(ctx context.Context, s *scope, ps *v1.PipelineSpec, entry []string) error {
	tasks := v1.PipelineTaskList(ps.Tasks)
	deps := tasks.Deps()
	g, err := dag.Build(tasks, deps)
	if err != nil {
		return fmt.Errorf("%s.tasks: %w", s.field, err)
	}
	order, err := topological(g)
	if err != nil {
		return fmt.Errorf("%s.tasks: %w", s.field, err)
	}
	// The DAG comes from the spec as written; the tasks are laid out from the spec whose
	// references name the flattened tasks.
	rw, err := rewriteRefs(s.resolved, ps, s.prefix)
	if err != nil {
		return fmt.Errorf("%s: %w", s.field, err)
	}
	// Tekton's ApplyPipelineTaskContexts reads the Pipeline from the run's status, where
	// the reconciler stores it after params are substituted (a matrix over an array param
	// has its length only then); task names carry the scope's prefix, as the rewritten
	// references that name them do.
	status := ps.DeepCopy()
	for i := range status.Tasks {
		status.Tasks[i].Name = s.prefix + status.Tasks[i].Name
	}
	s.run.Status.PipelineSpec = status
	byName := map[string]v1.PipelineTask{}
	for _, pt := range rw.Tasks {
		byName[pt.Name] = pt
	}
	// keysOf maps a PipelineTask name to the keys of the plan tasks it became.
	keysOf := map[string][]string{}
	var dagKeys []string
	// What $(tasks.status) of this pipeline's finally tasks covers (plan.TasksStatusScope).
	tasksStatus := &plan.TasksStatusScope{}
	for _, name := range order {
		after := append([]string{}, entry...)
		for _, dep := range deps[name] {
			after = append(after, keysOf[dep]...)
		}
		keys, err := c.addPipelineTask(ctx, s, slot{pt: byName[name], after: after})
		if err != nil {
			return err
		}
		keysOf[name] = keys
		dagKeys = append(dagKeys, keys...)
		if _, child := s.resolved.Pipelines[name]; child {
			tasksStatus.Children = append(tasksStatus.Children, keys...)
		} else {
			tasksStatus.Tasks = append(tasksStatus.Tasks, keys...)
		}
	}
	// Every non-finally task of the plan is the DAG of a pipeline without pipelines in it,
	// which is what the entrypoint assumes without a scope.
	if s.prefix == "" && len(tasksStatus.Children) == 0 {
		tasksStatus = nil
	} else {
		tasksStatus.Tasks, tasksStatus.Children = uniq(tasksStatus.Tasks), uniq(tasksStatus.Children)
	}
	for _, pt := range rw.Finally {
		after := append(append([]string{}, entry...), dagKeys...)
		if _, err := c.addPipelineTask(ctx, s, slot{pt: pt, finally: true, after: after, tasksStatus: tasksStatus}); err != nil {
			return err
		}
	}
	return nil
}

// topological orders a DAG with Tekton's own scheduler: what GetCandidateTasks offers
// once the tasks before it are done.
func topological(g *dag.Graph) ([]string, error) {
	var done []string
	for len(done) < len(g.Nodes) {
		next, err := dag.GetCandidateTasks(g, done...)
		if err != nil {
			return nil, err
		}
		if next.Len() == 0 {
			return nil, fmt.Errorf("no task can be scheduled after %v", done)
		}
		done = append(done, next.List()...)
	}
	return done, nil
}

// pipelineTask is what the child TaskRuns of one PipelineTask share (a matrix makes
// several).
type pipelineTask struct {
	slot
	name        string // the PipelineTask's name under the scope's prefix, as the run's status names it
	task        *trresources.ResolvedTask
	runSpec     v1.PipelineTaskRunSpec
	workspaces  []v1.WorkspaceBinding
	volumes     map[string]string
	timeout     *metav1.Duration
	resultsFrom []string
}

// addPipelineTask lays out one PipelineTask and returns the keys of the plan tasks it
// became: one per matrix instance, the child pipeline's tasks, or none when skipped.
func (c *Compiled) addPipelineTask(ctx context.Context, s *scope, sl slot) ([]string, error) {
	f := fmt.Sprintf("%s.%s[%s]", s.field, memberOf(sl.finally), sl.pt.Name)
	sl.pt = *prresources.ApplyPipelineTaskContexts(&sl.pt, s.run.Status, &prresources.PipelineRunFacts{})
	if child, ok := s.resolved.Pipelines[sl.pt.Name]; ok {
		return c.addChildPipeline(ctx, s, child, sl, f)
	}
	rt, err := resolvedTask(ctx, s.resolved, sl.pt, f)
	if err != nil {
		return nil, err
	}
	// What Tekton's PipelineRun reconciler checks of every task before it creates a
	// TaskRun: each param without a default is given, of its type, and each object param
	// gets every key its properties declare from the task's params or its default.
	if err := taskrun.ValidateResolvedTask(ctx, sl.pt.Params, sl.pt.Matrix, rt); err != nil {
		return nil, fmt.Errorf("%s.params: %w", f, err)
	}
	if err := refuseInOnePod(sl.pt, f); err != nil {
		return nil, err
	}
	if err := evaluateCEL(ctx, sl.pt, f); err != nil {
		return nil, err
	}
	if sl.pt.IsMatrixed() && !skippedForEmptyMatrix(sl.pt) {
		if err := c.fits(f, sl.pt); err != nil {
			return nil, err
		}
		// A matrix value YAML read as something other than a list of strings ([true,
		// false], [on, off], [1, 2]) is a string to Tekton, which fails the run when it
		// schedules the task; fanning it out would make no instance and skip the task.
		if err := prresources.ValidateParameterTypesInMatrix(prresources.PipelineRunState{{PipelineTask: &sl.pt}}); err != nil {
			return nil, &ReasonError{Reason: v1.PipelineRunReasonInvalidMatrixParameterTypes.String(), Err: fmt.Errorf("%s.matrix: %w", f, err)}
		}
	}
	if skippedForEmptyMatrix(sl.pt) {
		c.Skipped = append(c.Skipped, Skipped{PipelineTask: s.prefix + sl.pt.Name, Finally: sl.finally, Reason: v1.EmptyArrayInMatrixParams})
		return nil, nil
	}
	combos := matrixInstances(sl.pt)
	p, err := c.newPipelineTask(s, sl, rt, f)
	if err != nil {
		return nil, err
	}
	var keys []string
	for i, combo := range combos {
		t := c.instance(p, i, combo)
		if err := validLabels(f, t.TaskRun.Labels); err != nil {
			return nil, err
		}
		keys = append(keys, t.Key)
		c.Tasks = append(c.Tasks, t)
	}
	return keys, nil
}

// addChildPipeline flattens a pipelines-in-pipelines task into the pod.
func (c *Compiled) addChildPipeline(ctx context.Context, s *scope, child *resolve.Resolved, sl slot, f string) ([]string, error) {
	if sl.pt.IsMatrixed() {
		return nil, fmt.Errorf("%s.matrix: a matrixed pipelines-in-pipelines task is not supported in one pod", f)
	}
	childPR := s.run.DeepCopy()
	childPR.Spec.Params = sl.pt.Params
	cps, err := substitutePipeline(child.Spec.DeepCopy(), childPR, child.PipelineName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f, err)
	}
	before := len(c.Tasks)
	if err := c.addPipeline(ctx, childScope(s, sl.pt, child, childPR), cps, sl.after); err != nil {
		return nil, err
	}
	var keys []string
	for _, t := range c.Tasks[before:] {
		keys = append(keys, t.Key)
	}
	return keys, nil
}

// newPipelineTask gathers what a PipelineTask's TaskRuns share.
func (c *Compiled) newPipelineTask(s *scope, sl slot, rt *trresources.ResolvedTask, f string) (*pipelineTask, error) {
	p := &pipelineTask{slot: sl, name: s.prefix + sl.pt.Name, task: rt, runSpec: s.run.GetTaskRunSpec(sl.pt.Name)}
	for _, ref := range v1.PipelineTaskResultRefs(&sl.pt) {
		p.resultsFrom = append(p.resultsFrom, ref.PipelineTask)
	}
	var err error
	p.workspaces, p.volumes, err = c.taskWorkspaces(s, sl.pt, rt)
	if err != nil {
		return nil, fmt.Errorf("%s.workspaces: %w", f, err)
	}
	p.timeout = sl.pt.Timeout
	if p.runSpec.Timeout != nil {
		p.timeout = p.runSpec.Timeout
	}
	return p, nil
}

// resolvedTask is the Task a PipelineTask runs.
func resolvedTask(ctx context.Context, r *resolve.Resolved, pt v1.PipelineTask, f string) (*trresources.ResolvedTask, error) {
	rt := r.Tasks[pt.Name]
	if rt == nil {
		return nil, fmt.Errorf("%s: no resolved Task", f)
	}
	if pt.TaskSpec != nil {
		// An inline taskSpec is taken after the pipeline's substitution, which is how
		// pipeline params propagate into it without declarations.
		ts := pt.TaskSpec.TaskSpec.DeepCopy()
		ts.SetDefaults(ctx)
		rt = &trresources.ResolvedTask{TaskSpec: ts}
	}
	return rt, nil
}

// refuseInOnePod fails on what only a PipelineRun's reconciler, deciding while the run
// goes, could honour.
func refuseInOnePod(pt v1.PipelineTask, f string) error {
	for i, p := range pt.Matrix.GetAllParams() {
		if refs, _ := p.GetVarSubstitutionExpressions(); len(refsToTasks(refs)) > 0 {
			return fmt.Errorf("%s.matrix.params[%d] (%s): the matrix fans out over a result of task %q, known only at run time, and one pod's containers are fixed when it is created", f, i, p.Name, refsToTasks(refs)[0])
		}
	}
	return nil
}

// evaluateCEL does with a task's CEL when expressions what Tekton's PipelineRun
// reconciler does in its first reconcile: refuse them unless the feature flag allows
// them, and evaluate each once params and contexts are substituted, before any task ran
// (a reference to a result or status is still quoted text then), failing the run if one
// cannot be evaluated to a boolean. The entrypoint evaluates them again at run time,
// with results and statuses substituted, to decide.
func evaluateCEL(ctx context.Context, pt v1.PipelineTask, f string) error {
	for i, we := range pt.When {
		if we.CEL != "" && !config.FromContextOrDefaults(ctx).FeatureFlags.EnableCELInWhenExpression {
			return fmt.Errorf("%s.when[%d].cel: the feature flag %s must be \"true\" to use CEL in when expressions", f, i, config.EnableCELInWhenExpression)
		}
	}
	rpt := &prresources.ResolvedPipelineTask{PipelineTask: &pt}
	if err := rpt.EvaluateCEL(); err != nil {
		return &ReasonError{Reason: v1.PipelineRunReasonCELEvaluationFailed.String(), Err: fmt.Errorf("%s.when: error evaluating CEL: %w", f, err)}
	}
	return nil
}

// skippedForEmptyMatrix is Tekton's skip of a task whose matrix params hold an empty
// array (ResolvedPipelineTask.skipBecauseEmptyArrayInMatrixParams, unexported).
func skippedForEmptyMatrix(pt v1.PipelineTask) bool {
	if !pt.IsMatrixed() {
		return false
	}
	for _, p := range pt.Matrix.Params {
		if p.Value.Type == v1.ParamTypeArray && len(p.Value.ArrayVal) == 0 {
			return true
		}
	}
	return false
}

// matrixInstances are the params of each TaskRun a PipelineTask becomes: one without
// matrix params, one per combination with.
func matrixInstances(pt v1.PipelineTask) []v1.Params {
	if !pt.IsMatrixed() {
		return []v1.Params{nil}
	}
	return pt.Matrix.FanOut()
}

// instance is the plan task and child TaskRun of one matrix instance.
func (c *Compiled) instance(p *pipelineTask, i int, combo v1.Params) Task {
	key := p.name
	if p.pt.IsMatrixed() {
		key = fmt.Sprintf("%s-%d", key, i)
	}
	key = kmeta.ChildName(key, "")
	tr := c.taskRun(p, key, i, combo)
	return Task{
		Task: plan.Task{
			Key:          key,
			PipelineTask: p.name,
			TaskRun:      tr.Name,
			Finally:      p.finally,
			RunAfter:     uniq(p.after),
			ResultsFrom:  uniq(p.resultsFrom),
			When:         p.pt.When,
			Retries:      p.pt.Retries,
			OnError:      p.pt.OnError,
			Timeout:      p.timeout,
			Results:      planResults(p.task.TaskSpec),

			TasksStatus: p.tasksStatus,
		},
		TaskName:         p.task.TaskName,
		TaskRun:          tr,
		WorkspaceVolumes: p.volumes,
	}
}

// planResults are a Task's results as the entrypoint collects them.
func planResults(ts *v1.TaskSpec) []plan.Result {
	var results []plan.Result
	for _, res := range ts.Results {
		r := plan.Result{Name: res.Name, Type: res.Type}
		if res.Value != nil {
			// A task result made of a step result ($(steps.s.results.r)).
			r.Value = res.Value.StringVal
		}
		results = append(results, r)
	}
	return results
}

func childPrefix(prefix, name string) string { return prefix + name + "-" }

// rewriteRefs makes a Pipeline's task references name flattened tasks. Inside a child
// pipeline, $(tasks.X.…) becomes $(tasks.<prefix>X.…); and a reference to a child
// pipeline's result becomes the reference to the child task result it is made of. Only
// a result that is exactly one task result can be followed this way.
func rewriteRefs(r *resolve.Resolved, ps *v1.PipelineSpec, prefix string) (*v1.PipelineSpec, error) {
	type rule struct {
		from *regexp.Regexp
		to   string
	}
	var rules []rule
	// A reference continues with ")" "[" or "." after the name it names.
	add := func(from, to string) {
		rules = append(rules, rule{regexp.MustCompile(regexp.QuoteMeta(from) + `([)\[.])`), strings.ReplaceAll(to, "$", "$$") + "${1}"})
	}
	for name, child := range r.Pipelines {
		for _, res := range child.Spec.Results {
			v := strings.TrimSpace(res.Value.StringVal)
			if res.Value.Type != v1.ParamTypeString || !strings.HasPrefix(v, "$(tasks.") || !strings.HasSuffix(v, ")") || strings.Count(v, "$(") != 1 {
				return nil, fmt.Errorf("tasks[%s].pipelineSpec.results[%s]: in one pod a child pipeline's result must be exactly one task result, like $(tasks.t.results.r)", name, res.Name)
			}
			inner := strings.TrimSuffix(strings.TrimPrefix(v, "$(tasks."), ")")
			add("$(tasks."+name+".results."+res.Name, "$(tasks."+childPrefix(prefix, name)+inner)
		}
	}
	if prefix != "" {
		for _, pt := range append(append([]v1.PipelineTask{}, ps.Tasks...), ps.Finally...) {
			add("$(tasks."+pt.Name, "$(tasks."+prefix+pt.Name)
		}
	}
	b, err := json.Marshal(ps)
	if err != nil {
		return nil, err
	}
	text := string(b)
	for _, ru := range rules {
		text = ru.from.ReplaceAllString(text, ru.to)
	}
	out := &v1.PipelineSpec{}
	return out, json.Unmarshal([]byte(text), out)
}

func uniq(in []string) []string {
	seen := sets.New[string]()
	var out []string
	for _, s := range in {
		if !seen.Has(s) {
			seen.Insert(s)
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// refsToTasks returns the task names of $(tasks.X.results.Y) expressions.
func refsToTasks(exprs []string) []string {
	var out []string
	for _, e := range exprs {
		if strings.HasPrefix(e, "tasks.") {
			if parts := strings.SplitN(e, ".", 3); len(parts) >= 2 {
				out = append(out, parts[1])
			}
		}
	}
	return out
}

// runtimeParams gives a whole-result reference the shape the Task's param expects. A
// PipelineTask param `value: $(tasks.a.results.list[*])` is a string until the result
// exists; Tekton replaces it with the array at scheduling time. Here the TaskRun is
// built before the result exists, so an array param holds the reference as its only
// element (the entrypoint expands it into several args) and an object param holds one
// reference per declared key.
func runtimeParams(params v1.Params, specs v1.ParamSpecs) v1.Params {
	out := make(v1.Params, 0, len(params))
	for _, p := range params {
		p = *p.DeepCopy()
		if p.Value.Type == v1.ParamTypeString && isWholeResultRef(p.Value.StringVal) {
			for _, s := range specs {
				if s.Name != p.Name {
					continue
				}
				ref := strings.TrimSuffix(strings.TrimPrefix(p.Value.StringVal, "$("), "[*])")
				switch s.Type {
				case v1.ParamTypeArray:
					p.Value = v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{p.Value.StringVal}}
				case v1.ParamTypeObject:
					obj := map[string]string{}
					for key := range s.Properties {
						obj[key] = fmt.Sprintf("$(%s.%s)", ref, key)
					}
					p.Value = v1.ParamValue{Type: v1.ParamTypeObject, ObjectVal: obj}
				}
			}
		}
		out = append(out, p)
	}
	return out
}

func isWholeResultRef(s string) bool {
	return strings.HasPrefix(s, "$(tasks.") && strings.HasSuffix(s, "[*])") && strings.Count(s, "$(") == 1
}

// taskWorkspaces binds a PipelineTask's workspaces to the pipeline's, the way Tekton's
// PipelineRun reconciler binds a TaskRun's, but to pod volumes instead of per-pod claims.
func (c *Compiled) taskWorkspaces(s *scope, pt v1.PipelineTask, rt *trresources.ResolvedTask) ([]v1.WorkspaceBinding, map[string]string, error) {
	ptws := append([]v1.WorkspacePipelineTaskBinding{}, pt.Workspaces...)
	if pt.TaskSpec != nil {
		// Workspaces propagate into inline taskSpecs without a declaration, as in Tekton.
		used, err := workspace.FindWorkspacesUsedByTask(pt.TaskSpec.TaskSpec)
		if err != nil {
			return nil, nil, err
		}
		have := sets.New[string]()
		for _, w := range ptws {
			have.Insert(w.Name)
		}
		for _, name := range sets.List(sets.Set[string](used)) {
			if !have.Has(name) {
				ptws = append(ptws, v1.WorkspacePipelineTaskBinding{Name: name})
			}
		}
	}
	var out []v1.WorkspaceBinding
	vols := map[string]string{}
	for _, ptw := range ptws {
		pwName := ptw.Workspace
		if pwName == "" {
			pwName = ptw.Name
		}
		sw, ok := s.workspace(pwName)
		w := c.workspace(sw.name)
		if !ok || w == nil {
			// An optional workspace left unbound stays unbound, as in Tekton.
			continue
		}
		b := *w.Binding.DeepCopy()
		b.Name = ptw.Name
		b.SubPath = combinedSubPath(combinedSubPath(w.Binding.SubPath, sw.subPath), ptw.SubPath)
		out = append(out, b)
		vols[ptw.Name] = w.Volume
	}
	return out, vols, nil
}

func combinedSubPath(workspaceSubPath, pipelineTaskSubPath string) string {
	switch {
	case workspaceSubPath == "":
		return pipelineTaskSubPath
	case pipelineTaskSubPath == "":
		return workspaceSubPath
	}
	return workspaceSubPath + "/" + pipelineTaskSubPath
}
