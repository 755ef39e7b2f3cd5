package plan

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func line(t *testing.T, l ReportLine) string {
	t.Helper()
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadReport(t *testing.T) {
	running := line(t, ReportLine{Task: &TaskState{Key: "a", Phase: PhaseRunning}})
	done := line(t, ReportLine{Task: &TaskState{Key: "a", Phase: PhaseSucceeded, Reason: "Succeeded"}})
	b := line(t, ReportLine{Task: &TaskState{Key: "b", Phase: PhaseSkipped}})
	final := line(t, ReportLine{Done: true})
	wantAll := map[string]TaskState{
		"a": {Key: "a", Phase: PhaseSucceeded, Reason: "Succeeded"},
		"b": {Key: "b", Phase: PhaseSkipped},
	}
	for _, tc := range []struct {
		name     string
		log      string
		want     map[string]TaskState
		wantDone bool
	}{{
		name:     "plain lines, last wins",
		log:      strings.Join([]string{running, b, done, final}, "\n") + "\n",
		want:     wantAll,
		wantDone: true,
	}, {
		name: "truncated last line",
		log:  strings.Join([]string{running, b, done[:len(done)/2]}, "\n"),
		want: map[string]TaskState{"a": {Key: "a", Phase: PhaseRunning}, "b": {Key: "b", Phase: PhaseSkipped}},
	}, {
		name:     "timestamps=true",
		log:      "2026-01-02T03:04:05.123456789Z " + done + "\n2026-01-02T03:04:05.2Z " + b + "\n2026-01-02T03:04:05.3Z " + final + "\n",
		want:     wantAll,
		wantDone: true,
	}, {
		name: "CRI log file with a split line and stderr noise",
		log: "2026-01-02T03:04:05Z stdout P " + done[:10] + "\n" +
			"2026-01-02T03:04:05Z stderr F some warning\n" +
			"2026-01-02T03:04:05Z stdout F " + done[10:] + "\n" +
			"2026-01-02T03:04:05Z stdout F " + b + "\n" +
			"2026-01-02T03:04:05Z stdout F " + final + "\n",
		want:     wantAll,
		wantDone: true,
	}, {
		name: "garbage and empty lines",
		log:  "\nnot json\n{\"task\":\n" + b + "\r\n",
		want: map[string]TaskState{"b": {Key: "b", Phase: PhaseSkipped}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, gotDone, err := ReadReport(strings.NewReader(tc.log))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("states (-want +got):\n%s", diff)
			}
			if gotDone != tc.wantDone {
				t.Errorf("done = %v, want %v", gotDone, tc.wantDone)
			}
		})
	}
}

func TestReadReportLongLine(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	l := line(t, ReportLine{Task: &TaskState{Key: "a", Phase: PhaseSucceeded, Message: big}})
	got, _, err := ReadReport(strings.NewReader(l + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got["a"].Message != big {
		t.Error("a 1 MiB line did not survive")
	}
}

// A plan's ReadReport keeps only its own tasks' states: a line about a key no task of
// the plan has is not a state the controller may report on.
func TestPlanReadReportKeepsKnownKeys(t *testing.T) {
	p := &Plan{Tasks: []Task{{Key: "a"}, {Key: "b"}}}
	log := strings.Join([]string{
		line(t, ReportLine{Task: &TaskState{Key: "a", Phase: PhaseSucceeded}}),
		line(t, ReportLine{Task: &TaskState{Key: "intruder", Phase: PhaseSucceeded}}),
		line(t, ReportLine{Task: &TaskState{Key: "b", Phase: PhaseRunning}}),
		line(t, ReportLine{Done: true}),
	}, "\n") + "\n"
	got, done, err := p.ReadReport(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]TaskState{"a": {Key: "a", Phase: PhaseSucceeded}, "b": {Key: "b", Phase: PhaseRunning}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	if !done {
		t.Error("done marker lost")
	}
	all, _, _ := ReadReport(strings.NewReader(log))
	if _, ok := all["intruder"]; !ok {
		t.Error("the plan-less ReadReport should still see every key; the test no longer tells the two apart")
	}
}
