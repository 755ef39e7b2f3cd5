package observe

import (
	"encoding/json"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// PipelineResults computes the CustomRun's results from the Pipeline's results spec and
// the tasks' results, with Tekton's own PipelineRun code: a result that refers to a task
// that did not succeed (skipped, failed) is left out; a result that refers to a result a
// succeeded task did not produce is an error, as for a PipelineRun.
//
// A matrixed pipeline task's results are the arrays of its instances' string results, in
// instance order, as Tekton aggregates them. Array and object pipeline results become
// JSON, the only way a CustomRun result (a string) can carry them.
func PipelineResults(spec []v1.PipelineResult, tasks []TaskOutcome, skipped []v1.SkippedTask, matrixed map[string]bool) ([]v1beta1.CustomRunResult, error) {
	if len(spec) == 0 {
		return nil, nil
	}
	taskResults := map[string][]v1.TaskRunResult{}
	matrixCache := map[string]map[string][]string{}
	status := map[string]string{}
	for _, s := range skipped {
		status[resources.PipelineTaskStatusPrefix+s.Name+resources.PipelineTaskStatusSuffix] = resources.PipelineTaskStateNone
	}
	for _, t := range tasks {
		name := t.Task.PipelineTask
		key := resources.PipelineTaskStatusPrefix + name + resources.PipelineTaskStatusSuffix
		switch t.State {
		case plan.PhaseSucceeded:
			if _, seen := status[key]; !seen {
				status[key] = string(v1.TaskRunReasonSuccessful)
			}
		case plan.PhaseFailed, plan.PhaseCancelled:
			status[key] = string(v1.TaskRunReasonFailed)
		default:
			if status[key] != string(v1.TaskRunReasonFailed) {
				status[key] = resources.PipelineTaskStateNone
			}
		}
		if t.State != plan.PhaseSucceeded && t.State != plan.PhaseFailed {
			continue
		}
		if matrixed[name] {
			if matrixCache[name] == nil {
				matrixCache[name] = map[string][]string{}
			}
			for _, r := range t.Status.Results {
				matrixCache[name][r.Name] = append(matrixCache[name][r.Name], r.Value.StringVal)
			}
			continue
		}
		taskResults[name] = t.Status.Results
	}
	for name, cache := range matrixCache {
		taskResults[name] = resources.ConvertResultsMapToTaskRunResults(cache)
	}
	prResults, err := resources.ApplyTaskResultsToPipelineResults(spec, taskResults, nil, status)
	var out []v1beta1.CustomRunResult
	for _, r := range prResults {
		out = append(out, v1beta1.CustomRunResult{Name: r.Name, Value: resultString(r.Value)})
	}
	return out, err
}

func resultString(v v1.ResultValue) string {
	switch v.Type {
	case v1.ParamTypeArray:
		b, _ := json.Marshal(v.ArrayVal) //nolint:errchkjson // a []string always marshals
		return string(b)
	case v1.ParamTypeObject:
		b, _ := json.Marshal(v.ObjectVal) //nolint:errchkjson // a map[string]string always marshals
		return string(b)
	}
	return v.StringVal
}
