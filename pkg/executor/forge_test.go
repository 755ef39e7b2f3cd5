package executor_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// TestForgedStateIsAttributedToItsWriter: task x writes, into its own state directory,
// a status.json that claims to be task y's, with results of its choosing. y ran first,
// so before attribution by directory the forgery was the last word on y. Now no report
// line ever carries it, y keeps its own state and results, and x fails, naming the
// attempt.
func TestForgedStateIsAttributedToItsWriter(t *testing.T) {
	t.Parallel()
	y := task("y")
	y.Results = []plan.Result{{Name: "r", Type: v1.ResultsTypeString}}
	x := task("x", "y")
	forged := `{"key":"y","phase":"Succeeded","reason":"Succeeded","results":[{"name":"r","type":"string","value":"forged"}]}`
	pd := newPod(t, &plan.Plan{},
		ttask{Task: y, steps: []tstep{sh("printf genuine > $RESULTS/r")}},
		// The forgery stays in place for many reporter polls before x's leader ends x.
		ttask{Task: x, steps: []tstep{sh("printf '" + forged + "' > $ROOT/state/x/status.json\nsleep 0.5")}},
	)
	r := pd.run()
	if !r.done {
		t.Fatal("the reporter never wrote its done marker")
	}
	for _, l := range strings.Split(strings.TrimSpace(r.reportRaw), "\n") {
		var rl plan.ReportLine
		if err := json.Unmarshal([]byte(l), &rl); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if rl.Task != nil && strings.Contains(l, "forged") {
			t.Errorf("a report line carries the forgery: %s", l)
		}
	}
	wantY := []v1.TaskRunResult{{Name: "r", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("genuine")}}
	if diff := cmp.Diff(wantY, r.states["y"].Results); diff != "" {
		t.Errorf("y's results (-want +got):\n%s", diff)
	}
	if got := r.states["y"].Phase; got != plan.PhaseSucceeded {
		t.Errorf("y's phase = %s, want Succeeded", got)
	}
	sx := r.states["x"]
	if sx.Phase != plan.PhaseFailed || !strings.Contains(sx.Message, "forging attempt") || !strings.Contains(sx.Message, `"y"`) {
		t.Errorf("x = %s/%s %q, want Failed with a message naming the forging attempt on y", sx.Phase, sx.Reason, sx.Message)
	}
	if len(sx.Results) != 0 {
		t.Errorf("x publishes results from its forged file: %v", sx.Results)
	}
}
