package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
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

// endless is a log of one line of n bytes (a task's state whose message is the bulk of
// it), produced as it is read: a test holding it whole would defeat its purpose.
type endless struct {
	head, tail []byte
	n, off     int
}

func newEndless(key string, n int) *endless {
	return &endless{head: []byte(`{"task":{"key":"` + key + `","phase":"Succeeded","message":"`), tail: []byte("\"}}\n"), n: n}
}

func (e *endless) Read(p []byte) (int, error) {
	if e.off >= e.n {
		return 0, io.EOF
	}
	i := 0
	for ; i < len(p) && e.off < e.n; i, e.off = i+1, e.off+1 {
		switch {
		case e.off < len(e.head):
			p[i] = e.head[e.off]
		case e.off >= e.n-len(e.tail):
			p[i] = e.tail[e.off-(e.n-len(e.tail))]
		default:
			p[i] = 'x'
		}
	}
	return i, nil
}

// A line over the bound is refused, naming its task, without being held in memory.
func TestFolderRefusesLongLine(t *testing.T) {
	p := &Plan{Tasks: []Task{{Key: "a"}, {Key: "b"}}}
	f := p.NewFolder(Limits{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const size = 100 << 20
	if err := f.Fold(io.MultiReader(newEndless("a", size), strings.NewReader(line(t, ReportLine{Task: &TaskState{Key: "b", Phase: PhaseRunning}})+"\n"))); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("folding a %d-byte line allocated %d bytes", size, alloc)
	}
	a := f.States()["a"]
	if a.Phase != PhaseFailed || a.Reason != "TaskRunResultLargerThanAllowedLimit" ||
		a.Message != fmt.Sprintf(`task "a": its reported state is %d bytes or more, over the %d bytes the reported states of one run may take in all`, size-1, MaxReportBytes) {
		t.Errorf("a = %+v", a)
	}
	if f.States()["b"].Phase != PhaseRunning {
		t.Errorf("the line after the long one was lost: %+v", f.States())
	}
	// An over-long line of a key the plan does not have changes nothing.
	if err := f.Fold(newEndless("intruder", 2*MaxReportBytes)); err != nil || len(f.States()) != 2 {
		t.Errorf("states = %+v", f.States())
	}
}

// The same over CRI partial lines, which are joined only up to the bound.
func TestFolderRefusesLongCRILine(t *testing.T) {
	p := &Plan{Tasks: []Task{{Key: "a"}}}
	f := p.NewFolder(Limits{MaxBytes: 100})
	head := `{"task":{"key":"a","phase":"Succeeded","message":"`
	part := "2026-01-02T03:04:05Z stdout P " + strings.Repeat("x", 16<<10) + "\n"
	log := "2026-01-02T03:04:05Z stdout P " + head + "\n" + strings.Repeat(part, 5) +
		"2026-01-02T03:04:05Z stdout F " + `"}}` + "\n"
	if err := f.Fold(strings.NewReader(log)); err != nil {
		t.Fatal(err)
	}
	if a := f.States()["a"]; a.Reason != ReasonResultLargerThanAllowedLimit || !strings.Contains(a.Message, fmt.Sprintf("is %d bytes or more", len(head)+5*16<<10+3)) {
		t.Errorf("a = %+v", a)
	}
}

func TestFolderResultLimits(t *testing.T) {
	big := v1.TaskRunResult{Name: "big", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(strings.Repeat("x", 5000))}
	small := v1.TaskRunResult{Name: "small", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("ok")}
	for _, tc := range []struct {
		name    string
		limits  Limits
		state   TaskState
		message string
	}{{
		name:    "a task result over max-result-size",
		limits:  Limits{MaxResultSize: 4096},
		state:   TaskState{Key: "a", Phase: PhaseSucceeded, Results: []v1.TaskRunResult{small, big}},
		message: `task "a": result "big" is 5041 bytes, over the max-result-size of 4096 bytes`,
	}, {
		name:    "a step result",
		limits:  Limits{MaxResultSize: 4096},
		state:   TaskState{Key: "a", Phase: PhaseRunning, Steps: []StepState{{Name: "s", Results: []v1.TaskRunResult{big}}}},
		message: `task "a": step "s" result "big" is 5041 bytes, over the max-result-size of 4096 bytes`,
	}, {
		name:    "a retried attempt's result",
		limits:  Limits{MaxResultSize: 4096},
		state:   TaskState{Key: "a", Phase: PhaseRunning, Attempts: []TaskState{{Key: "a", Phase: PhaseFailed, Results: []v1.TaskRunResult{big}}}},
		message: `task "a": result "big" is 5041 bytes, over the max-result-size of 4096 bytes`,
	}, {
		name:   "within the limit",
		limits: Limits{MaxResultSize: 8192},
		state:  TaskState{Key: "a", Phase: PhaseSucceeded, Results: []v1.TaskRunResult{big}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := (&Plan{Tasks: []Task{{Key: "a"}}}).NewFolder(tc.limits)
			if err := f.Fold(strings.NewReader(line(t, ReportLine{Task: &tc.state}) + "\n")); err != nil {
				t.Fatal(err)
			}
			want := tc.state
			if tc.message != "" {
				want = TaskState{Key: "a", Phase: PhaseFailed, Reason: "TaskRunResultLargerThanAllowedLimit", Message: tc.message}
			}
			if diff := cmp.Diff(want, f.States()["a"]); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// The states kept stay under the per-run total: the task whose state would cross it
// fails, the others keep theirs.
func TestFolderRunTotal(t *testing.T) {
	p := &Plan{Tasks: []Task{{Key: "a"}, {Key: "b"}, {Key: "c"}}}
	f := p.NewFolder(Limits{MaxBytes: 300})
	msg := strings.Repeat("m", 100)
	var log []string
	for _, k := range []string{"a", "b", "c"} {
		log = append(log, line(t, ReportLine{Task: &TaskState{Key: k, Phase: PhaseSucceeded, Message: msg}}))
	}
	if err := f.Fold(strings.NewReader(strings.Join(log, "\n") + "\n")); err != nil {
		t.Fatal(err)
	}
	got := f.States()
	if got["a"].Message != msg || got["b"].Message != msg {
		t.Errorf("a and b fit: %+v", got)
	}
	if c := got["c"]; c.Phase != PhaseFailed || c.Reason != ReasonResultLargerThanAllowedLimit || !strings.Contains(c.Message, "over the 300 one run may carry") {
		t.Errorf("c = %+v", c)
	}
	// What is kept weighs at most the total, plus the small state that refuses a task.
	if kept := len(mustJSON(got["a"])) + len(mustJSON(got["b"])); kept > 300 {
		t.Errorf("the states kept weigh %d bytes", kept)
	}
}

// A terminal state is final: a snapshot printing it again, or an older line read again
// after a reconnect, changes nothing.
func TestFolderTerminalIsFinal(t *testing.T) {
	f := (&Plan{Tasks: []Task{{Key: "a"}, {Key: "b"}}}).NewFolder(Limits{})
	done := ReportLine{Task: &TaskState{Key: "a", Phase: PhaseSucceeded, Reason: "Succeeded"}}
	for i, tc := range []struct {
		l    ReportLine
		want bool
	}{
		{ReportLine{Task: &TaskState{Key: "a", Phase: PhaseRunning}}, true},
		{ReportLine{Task: &TaskState{Key: "a", Phase: PhaseRunning}}, false},
		{done, true},
		{done, false},
		{ReportLine{Task: &TaskState{Key: "a", Phase: PhaseRunning}}, false},
		{ReportLine{Task: &TaskState{Key: "b", Phase: PhaseSkipped}}, true},
		{ReportLine{Done: true}, true},
		{ReportLine{Done: true}, false},
	} {
		b := []byte(line(t, tc.l))
		if got := f.Line(b, len(b)); got != tc.want {
			t.Errorf("line %d: changed = %v, want %v", i, got, tc.want)
		}
	}
	if a := f.States()["a"]; a.Phase != PhaseSucceeded {
		t.Errorf("a = %+v", a)
	}
	var keys []string
	for _, s := range f.Terminal() {
		keys = append(keys, s.Key)
	}
	if diff := cmp.Diff([]string{"a", "b"}, keys); diff != "" {
		t.Errorf("terminal states, in plan order (-want +got)\n%s", diff)
	}
}

func TestLineReader(t *testing.T) {
	lr := NewLineReader(strings.NewReader("short\n"+strings.Repeat("y", 100)+"\nlast"), 10)
	for _, want := range []struct {
		line     string
		n        int
		complete bool
		err      error
	}{{"short", 5, true, nil}, {strings.Repeat("y", 10), 100, true, nil}, {"last", 4, false, io.EOF}} {
		line, n, complete, err := lr.Next()
		if string(line) != want.line || n != want.n || complete != want.complete || !errors.Is(err, want.err) {
			t.Errorf("Next() = %q %d %v %v, want %q %d %v %v", line, n, complete, err, want.line, want.n, want.complete, want.err)
		}
	}
}

func TestLineTime(t *testing.T) {
	for _, tc := range []struct {
		line string
		want string
	}{
		{`2026-01-02T03:04:05.123456789Z {"done":true}`, "2026-01-02T03:04:05.123456789Z"},
		{`2026-01-02T03:04:05Z stdout F {"done":true}`, "2026-01-02T03:04:05Z"},
		{`{"done":true}`, ""},
	} {
		got, ok := LineTime([]byte(tc.line))
		if ok != (tc.want != "") || (ok && got.Format(time.RFC3339Nano) != tc.want) {
			t.Errorf("LineTime(%q) = %v %v, want %q", tc.line, got, ok, tc.want)
		}
	}
}

// Snapshot lines re-print the terminal states within the line bound, and fold like the
// lines that first carried them.
func TestFolderSnapshot(t *testing.T) {
	p := &Plan{Tasks: []Task{{Key: "a"}, {Key: "b"}, {Key: "c"}}}
	l := Limits{MaxBytes: 400}
	f := p.NewFolder(l)
	msg := strings.Repeat("m", 100)
	for _, st := range []TaskState{
		{Key: "c", Phase: PhaseSucceeded, Message: msg},
		{Key: "a", Phase: PhaseFailed, Message: msg},
		{Key: "b", Phase: PhaseRunning},
	} {
		if _, changed := f.Put(st); !changed {
			t.Fatalf("%s: not kept", st.Key)
		}
	}
	snap := f.Snapshot()
	var keys [][]string
	var log strings.Builder
	for _, sl := range snap {
		var ks []string
		for _, st := range sl.Snapshot {
			ks = append(ks, st.Key)
		}
		keys = append(keys, ks)
		b := line(t, sl)
		if len(b) > l.LineBound() {
			t.Errorf("a snapshot line of %d bytes", len(b))
		}
		log.WriteString(b + "\n")
	}
	// Two states of ~150 bytes do not fit a quarter of 400: one line each, in plan order.
	if diff := cmp.Diff([][]string{{"a"}, {"c"}}, keys); diff != "" {
		t.Errorf("snapshot lines (-want +got)\n%s", diff)
	}
	// A reader that saw none of the original lines (rotated away) gets them back.
	g := p.NewFolder(l)
	if err := g.Fold(strings.NewReader(log.String())); err != nil {
		t.Fatal(err)
	}
	want := f.States()
	delete(want, "b")
	if diff := cmp.Diff(want, g.States()); diff != "" {
		t.Errorf("folded snapshot (-want +got)\n%s", diff)
	}
}
