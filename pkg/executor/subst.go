package executor

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/substitution"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// Tekton's names for $(tasks.<pt>.status) and $(tasks.status) values
// (pkg/reconciler/pipelinerun/resources/pipelinerunstate.go).
const (
	statusNone      = "None"
	retryCountParam = "context.task.retry-count"
)

// values holds the run-time replacements, keyed like Tekton's own replacement maps
// ("tasks.<pt>.results.<r>", without "$(" and ")") so that pkg/substitution and
// v1.WhenExpressions apply them exactly as Tekton's reconciler would have.
type values struct {
	str map[string]string
	arr map[string][]string
	// pipelineTasks lets unresolved references to this pipeline be told apart from
	// shell text that happens to look alike.
	pipelineTasks map[string]bool
}

// newValues computes the replacements visible to task t of p in its attempt retry.
func newValues(p *plan.Plan, t *plan.Task, states map[string]*plan.TaskState, retry int) *values {
	v := &values{
		str:           map[string]string{retryCountParam: strconv.Itoa(retry)},
		arr:           map[string][]string{},
		pipelineTasks: map[string]bool{},
	}
	order, groups := groupTasks(p)
	for _, name := range order {
		g := groups[name]
		v.pipelineTasks[name] = true
		sts := make([]*plan.TaskState, len(g))
		done := true
		for i, t := range g {
			sts[i] = states[t.Key]
			done = done && terminal(sts[i])
		}
		v.addMatrixResultLengths(name, g, sts)
		if !done {
			continue
		}
		v.str["tasks."+name+".status"] = groupStatus(sts)
		v.str["tasks."+name+".reason"] = groupReason(sts)
		if !allSucceeded(sts) {
			continue
		}
		if len(g) == 1 {
			for _, r := range sts[0].Results {
				v.addResult(name, r.Name, r.Value)
			}
			continue
		}
		// A matrixed task's string results reach consumers as one array, in instance
		// order (Tekton's findResultValuesForMatrix).
		for _, decl := range g[0].Results {
			if decl.Type != "" && decl.Type != v1.ResultsTypeString {
				continue
			}
			var all []string
			for _, s := range sts {
				for _, r := range s.Results {
					if r.Name == decl.Name {
						all = append(all, r.Value.StringVal)
					}
				}
			}
			v.addResult(name, decl.Name, v1.ResultValue{Type: v1.ParamTypeArray, ArrayVal: all})
		}
	}
	v.str[v1.PipelineTasksAggregateStatus] = aggregateStatus(p, t, states)
	return v
}

// aggregateStatus is $(tasks.status) for t, as Tekton's GetPipelineTaskStatus makes it:
// over the DAG of t's own pipeline (plan.Task.TasksStatus), every non-finally task of
// the plan unless that says otherwise.
func aggregateStatus(p *plan.Plan, t *plan.Task, states map[string]*plan.TaskState) string {
	scope := plan.TasksStatusScope{}
	if t != nil && t.TasksStatus != nil {
		scope = *t.TasksStatus
	} else {
		for _, pt := range p.Tasks {
			if !pt.Finally {
				scope.Tasks = append(scope.Tasks, pt.Key)
			}
		}
	}
	failed, skipped := false, false
	for _, k := range scope.Tasks {
		s := states[k]
		if !terminal(s) {
			return statusNone
		}
		failed = failed || s.Phase == plan.PhaseFailed
		skipped = skipped || s.Phase == plan.PhaseSkipped
	}
	for _, k := range scope.Children {
		s := states[k]
		if !terminal(s) {
			return statusNone
		}
		// A failure the child ignores (onError: continue) does not fail it.
		failed = failed || (s.Phase == plan.PhaseFailed && s.Reason != v1.TaskRunReasonFailureIgnored.String())
	}
	switch {
	case failed:
		return v1.PipelineRunReasonFailed.String()
	case skipped:
		return v1.PipelineRunReasonCompleted.String()
	}
	return v1.PipelineRunReasonSuccessful.String()
}

// addMatrixResultLengths sets $(tasks.<pt>.matrix.<result>.length): how many of the
// task's runs produced the result so far, as Tekton counts them from the TaskRuns'
// results when it creates the consumer (createResultsCacheMatrixedTaskRuns). Only the
// declared results get one; $(tasks.<pt>.matrix.length) is known before the run and
// substituted by compile.
func (v *values) addMatrixResultLengths(name string, g []*plan.Task, sts []*plan.TaskState) {
	for _, decl := range g[0].Results {
		n := 0
		for _, s := range sts {
			if s == nil {
				continue
			}
			for _, r := range s.Results {
				if r.Name == decl.Name {
					n++
				}
			}
		}
		v.str[fmt.Sprintf("tasks.%s.matrix.%s.length", name, decl.Name)] = strconv.Itoa(n)
	}
}

// groupTasks groups plan tasks by PipelineTask (matrix instances share one).
func groupTasks(p *plan.Plan) ([]string, map[string][]*plan.Task) {
	var order []string
	groups := map[string][]*plan.Task{}
	for i := range p.Tasks {
		t := &p.Tasks[i]
		if _, ok := groups[t.PipelineTask]; !ok {
			order = append(order, t.PipelineTask)
		}
		groups[t.PipelineTask] = append(groups[t.PipelineTask], t)
	}
	return order, groups
}

func allSucceeded(sts []*plan.TaskState) bool {
	for _, s := range sts {
		if s == nil || s.Phase != plan.PhaseSucceeded {
			return false
		}
	}
	return true
}

// groupStatus is $(tasks.<pt>.status): Succeeded when every run succeeded, Failed when
// any failed, None otherwise (skipped included), as Tekton's GetPipelineTaskStatus.
func groupStatus(sts []*plan.TaskState) string {
	if allSucceeded(sts) {
		return v1.TaskRunReasonSuccessful.String()
	}
	for _, s := range sts {
		if s.Phase == plan.PhaseFailed {
			return v1.TaskRunReasonFailed.String()
		}
	}
	return statusNone
}

// groupReason is $(tasks.<pt>.reason): the reason of the first run that did not
// succeed, else of the first run; skipped tasks have no TaskRun in Tekton, so no reason.
func groupReason(sts []*plan.TaskState) string {
	var ran []*plan.TaskState
	for _, s := range sts {
		if s.Phase != plan.PhaseSkipped {
			ran = append(ran, s)
		}
	}
	for _, s := range ran {
		if s.Phase != plan.PhaseSucceeded {
			return s.Reason
		}
	}
	if len(ran) > 0 {
		return ran[0].Reason
	}
	return ""
}

// resultKeys are the spellings Tekton accepts for one result reference
// (resultrefresolution.go getReplaceTarget); suffix follows the result name.
func resultKeys(pt, name, suffix string) []string {
	return []string{
		fmt.Sprintf("tasks.%s.results.%s%s", pt, name, suffix),
		fmt.Sprintf("tasks.%s.results[%q]%s", pt, name, suffix),
		fmt.Sprintf("tasks.%s.results['%s']%s", pt, name, suffix),
	}
}

func (v *values) addResult(pt, name string, val v1.ResultValue) {
	set := func(suffix, s string) {
		for _, k := range resultKeys(pt, name, suffix) {
			v.str[k] = s
		}
	}
	switch val.Type {
	case v1.ParamTypeArray:
		for i, e := range val.ArrayVal {
			set(fmt.Sprintf("[%d]", i), e)
		}
		for _, k := range resultKeys(pt, name, "") {
			v.arr[k] = val.ArrayVal
		}
		// Where an array cannot expand into separate args (inside a longer string,
		// env, script) it is written as JSON, as Tekton does for when inputs.
		js, _ := json.Marshal(val.ArrayVal) //nolint:errchkjson // a []string always marshals
		set("", string(js))
		set("[*]", string(js))
	case v1.ParamTypeObject:
		for k, e := range val.ObjectVal {
			set("."+k, e)
			set("["+k+"]", e)
			set(fmt.Sprintf("[%q]", k), e)
			set(fmt.Sprintf("['%s']", k), e)
		}
		js, _ := json.Marshal(val.ObjectVal) //nolint:errchkjson // a map[string]string always marshals
		set("", string(js))
		set("[*]", string(js))
	default:
		set("", val.StringVal)
	}
}

var taskRefPattern = regexp.MustCompile(`\$\(tasks\.([^.\[\])\s]+)[.\[]`)

// unresolved reports a reference to one of this pipeline's tasks that is still in s
// after substitution, i.e. a result that was never produced.
func (v *values) unresolved(s string) error {
	for _, m := range taskRefPattern.FindAllStringSubmatchIndex(s, -1) {
		if v.pipelineTasks[s[m[2]:m[3]]] {
			end := strings.IndexByte(s[m[0]:], ')')
			ref := s[m[0]:]
			if end >= 0 {
				ref = ref[:end+1]
			}
			return fmt.Errorf("%s: no such result (the task did not produce it)", ref)
		}
	}
	return nil
}

func (v *values) string(s string) (string, error) {
	if !strings.Contains(s, "$(") {
		return s, nil
	}
	out := substitution.ApplyReplacements(s, v.str)
	return out, v.unresolved(out)
}

// args substitutes a command line; an arg that is exactly an array reference becomes
// one arg per element.
func (v *values) args(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, a := range in {
		if !strings.Contains(a, "$(") {
			out = append(out, a)
			continue
		}
		for _, e := range substitution.ApplyArrayReplacements(a, v.str, v.arr) {
			if err := v.unresolved(e); err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// when substitutes and evaluates when expressions. A reference left unresolved is
// returned as an error: the caller decides whether that means missing results. A CEL
// expression that cannot be evaluated once every reference is resolved is a *celError.
func (v *values) when(in v1.WhenExpressions) (bool, error) {
	if len(in) == 0 {
		return true, nil
	}
	// ReplaceVariables writes into its receiver's backing array.
	w := append(v1.WhenExpressions(nil), in...)
	for i := range w {
		w[i].Values = append([]string(nil), w[i].Values...)
	}
	w = w.ReplaceVariables(v.str, v.arr)
	for _, e := range w {
		for _, s := range append([]string{e.Input, e.CEL}, e.Values...) {
			if err := v.unresolved(s); err != nil {
				return false, err
			}
		}
	}
	cels := map[string]bool{}
	for _, e := range w {
		if e.CEL == "" {
			continue
		}
		ok, err := evalCEL(e.CEL)
		if err != nil {
			return false, &celError{err: err}
		}
		cels[e.CEL] = ok
	}
	return w.AllowsExecution(cels), nil
}

// celError is a CEL when expression that failed to evaluate, for which Tekton fails the
// PipelineRun with reason CELEvaluationFailed.
type celError struct{ err error }

func (e *celError) Error() string { return "error evaluating CEL: " + e.err.Error() }
func (e *celError) Unwrap() error { return e.err }

// evalCEL evaluates a when expression's CEL with no variables, as Tekton's
// ResolvedPipelineTask.EvaluateCEL does; importing that package would pull the whole
// PipelineRun reconciler into a binary that is copied into every pod.
func evalCEL(expr string) (bool, error) {
	env, err := cel.NewEnv()
	if err != nil {
		return false, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return false, iss.Err()
	}
	prg, err := env.Program(ast)
	if err != nil {
		return false, err
	}
	out, _, err := prg.Eval(map[string]any{})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("the CEL expression %s is not evaluated to a boolean", expr)
	}
	return b, nil
}
