package executor

import (
	"strings"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// FuzzSubstitution feeds run-time substitution what a step controls: the values of the
// results it writes (string, array, object) and, as the consumer's text, anything a
// spec may hold. It must not panic, must not take long, and must replace each
// reference once: a result value that itself looks like a reference stays text.
func FuzzSubstitution(f *testing.F) {
	for _, seed := range [][3]string{
		{"$(tasks.a.results.s)", "v", `["x","y"]`},
		{"pre-$(tasks.a.results.arr[*])-post", "$(tasks.a.results.s)", `["$(tasks.a.results.s)"]`},
		{"$(tasks.a.results.obj.k) $(tasks.a.results['s']) $(tasks.a.results[\"s\"])", "", `[]`},
		{"$(tasks.m.results.r[1]) $(tasks.status) $(tasks.a.status) $(context.task.retry-count)", "x", `["a","b","c"]`},
		{"$(tasks.a.results.s", ")$(", `[`},
		{"$(tasks.a.results.missing)", "v", `["v"]`},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, text, val, arrJSON string) {
		p := &plan.Plan{Tasks: []plan.Task{
			{Key: "a", PipelineTask: "a", Results: []plan.Result{{Name: "s"}, {Name: "arr", Type: v1.ResultsTypeArray}, {Name: "obj", Type: v1.ResultsTypeObject}}},
			{Key: "m-0", PipelineTask: "m", Results: []plan.Result{{Name: "r"}}},
			{Key: "m-1", PipelineTask: "m", Results: []plan.Result{{Name: "r"}}},
		}}
		arr := strings.Split(arrJSON, ",")
		states := map[string]*plan.TaskState{
			"a": st("a", plan.PhaseSucceeded, "Succeeded",
				strResult("s", val),
				v1.TaskRunResult{Name: "arr", Type: v1.ResultsTypeArray, Value: v1.ResultValue{Type: v1.ParamTypeArray, ArrayVal: arr}},
				v1.TaskRunResult{Name: "obj", Type: v1.ResultsTypeObject, Value: v1.ResultValue{Type: v1.ParamTypeObject, ObjectVal: map[string]string{"k": val, val: arrJSON}}},
			),
			"m-0": st("m-0", plan.PhaseSucceeded, "Succeeded", strResult("r", val)),
			"m-1": st("m-1", plan.PhaseSucceeded, "Succeeded", strResult("r", arrJSON)),
		}
		start := time.Now()
		v := newValues(p, nil, states, 1)
		out, _ := v.string(text)
		_, _ = v.args([]string{text, "$(tasks.a.results.arr[*])", "$(tasks.m.results.r[*])"})
		_, _ = v.when(v1.WhenExpressions{{Input: text, Operator: selection.In, Values: []string{val, "$(tasks.a.results.s)"}}})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("substitution took %v", d)
		}
		if text == "$(tasks.a.results.s)" && out != val {
			t.Errorf("$(tasks.a.results.s) became %q, want the value %q exactly once", out, val)
		}
		// Each reference is replaced by one value, never by values of values.
		if limit := len(text) + (strings.Count(text, "$(")+1)*(len(val)+len(arrJSON)*4+64); len(out) > limit {
			t.Errorf("substituting %d bytes of text made %d bytes", len(text), len(out))
		}
	})
}
