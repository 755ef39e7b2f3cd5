package executor_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// reportLines parses the reporter's log, failing on any line that is not a ReportLine.
func reportLines(t *testing.T, raw string) []plan.ReportLine {
	t.Helper()
	var out []plan.ReportLine
	for _, l := range strings.Split(strings.TrimSpace(raw), "\n") {
		var rl plan.ReportLine
		if err := json.Unmarshal([]byte(l), &rl); err != nil {
			t.Fatalf("line %.80q: %v", l, err)
		}
		out = append(out, rl)
	}
	return out
}

// TestReportSurvivesRotation: the kubelet rotates a container's log at any line and
// pods/log then serves only what follows. Whatever line it rotates at, what follows
// still folds to every task's final state, as the whole log does: snapshots re-print
// the terminal states (here after b's large state, and before the final marker).
func TestReportSurvivesRotation(t *testing.T) {
	t.Parallel()
	b := task("b", "a")
	b.Results = []plan.Result{{Name: "big", Type: v1.ResultsTypeString}}
	pd := newPod(t, &plan.Plan{},
		ttask{Task: task("a"), steps: []tstep{sh("true")}},
		// Over the reporter's minimum snapshot spacing (256 KiB): a snapshot follows it.
		ttask{Task: b, steps: []tstep{sh("head -c 300000 /dev/zero | tr '\\0' x > $RESULTS/big")}},
		ttask{Task: task("c", "b"), steps: []tstep{sh("sleep 0.3")}},
	)
	r := pd.run()
	if !r.done {
		t.Fatal("no final marker")
	}
	lines := strings.SplitAfter(r.reportRaw, "\n")
	want := r.phases()
	if len(want) != 3 || want["b"] != succeeded {
		t.Fatalf("the whole log: %v", want)
	}
	// A snapshot holding b comes before c's final state.
	parsed := reportLines(t, r.reportRaw)
	snapshotB, finalC := -1, -1
	for i, l := range parsed {
		for _, s := range l.Snapshot {
			if s.Key == "b" && snapshotB < 0 {
				snapshotB = i
			}
		}
		if l.Task != nil && l.Task.Key == "c" && l.Task.Phase.IsTerminal() {
			finalC = i
		}
	}
	if snapshotB < 0 || finalC < 0 || snapshotB > finalC {
		t.Errorf("b's snapshot at line %d, c's final state at line %d", snapshotB, finalC)
	}
	// The final snapshot holds every task; then comes the final marker.
	last := parsed[len(parsed)-1]
	if !last.Done {
		t.Fatalf("last line %+v", last)
	}
	// Rotating inside the final snapshot is the one case left (docs/design.md, "The
	// results channel").
	finalSnapshot := len(parsed) - 1 - len(snapshotLinesAtEnd(parsed))
	for cut := 0; cut <= finalSnapshot; cut++ {
		rest := strings.Join(lines[cut:], "")
		states, done, err := pd.plan.ReadReport(strings.NewReader(rest))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for k, s := range states {
			got[k] = string(s.Phase) + "/" + s.Reason
		}
		if diff := cmp.Diff(want, got); diff != "" || !done {
			t.Errorf("rotated before line %d of %d: done %v, states (-whole log +what follows)\n%s", cut, len(lines), done, diff)
		}
	}
}

// snapshotLinesAtEnd are the snapshot lines just before the final marker.
func snapshotLinesAtEnd(ls []plan.ReportLine) []plan.ReportLine {
	i := len(ls) - 1
	for i > 0 && len(ls[i-1].Snapshot) > 0 {
		i--
	}
	return ls[i : len(ls)-1]
}

// TestReportBoundsOversizedStates: a task whose state would not fit the run's bounds —
// a 2 MiB result, or a status.json its step blew up (replaced whole: the other tasks'
// leaders read it too) — fails with Tekton's reason for a
// result over its limit, and no line of the log is over the bound a reader keeps.
func TestReportBoundsOversizedStates(t *testing.T) {
	t.Parallel()
	big := task("big")
	big.Results = []plan.Result{{Name: "r", Type: v1.ResultsTypeString}}
	pd := newPod(t, &plan.Plan{},
		ttask{Task: big, steps: []tstep{sh("head -c 2097152 /dev/zero | tr '\\0' x > $RESULTS/r")}},
		ttask{Task: task("blown"), steps: []tstep{sh(`{ printf '{"key":"blown","phase":"Running","message":"'; head -c 3000000 /dev/zero | tr '\0' m; printf '"}'; } > $ROOT/state/blown/.tmp && mv $ROOT/state/blown/.tmp $ROOT/state/blown/status.json; sleep 0.5`)}},
		ttask{Task: task("fine"), steps: []tstep{sh("true")}},
	)
	r := pd.run()
	if !r.done {
		t.Fatal("no final marker")
	}
	for _, key := range []string{"big", "blown"} {
		s := r.states[key]
		if s.Phase != plan.PhaseFailed || s.Reason != v1.TaskRunReasonResultLargerThanAllowedLimit.String() ||
			!strings.Contains(s.Message, fmt.Sprintf("task %q", key)) || len(s.Results) != 0 {
			t.Errorf("%s = %s/%s %q, %d results", key, s.Phase, s.Reason, s.Message, len(s.Results))
		}
	}
	if got := r.phases()["fine"]; got != succeeded {
		t.Errorf("fine = %s", got)
	}
	bound := plan.Limits{}.LineBound()
	for i, l := range strings.Split(r.reportRaw, "\n") {
		if len(l) > bound {
			t.Errorf("line %d is %d bytes, over the %d a reader keeps", i, len(l), bound)
		}
	}
	if len(r.reportRaw) > 64<<10 {
		t.Errorf("the reporter printed %d bytes", len(r.reportRaw))
	}
}
