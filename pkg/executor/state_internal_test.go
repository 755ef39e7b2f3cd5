package executor

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// bigState is a state whose JSON takes about n bytes, so that writing it takes many
// write calls' worth of time and a reader of a file replaced in place would catch it
// half written.
func bigState(key string, phase plan.Phase, n int) *plan.TaskState {
	return &plan.TaskState{Key: key, Phase: phase, Results: []v1.TaskRunResult{{
		Name: "r", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(strings.Repeat("x", n)),
	}}}
}

// One writer replaces a task's status.json as fast as it can while readers read it as
// fast as they can: every read finds a whole state, never a partial file, and no
// temporary file is left behind.
func TestWriteAtomicRacingReaders(t *testing.T) {
	dir := t.TempDir()
	if err := mkdirShared(plan.TaskDir(dir, "x")); err != nil {
		t.Fatal(err)
	}
	const readers = 4
	var stop atomic.Bool
	var reads, whole atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				st, err := readState(dir, "x")
				if err != nil {
					errs <- err
					return
				}
				reads.Add(1)
				if st != nil && st.Key == "x" && len(st.Results) == 1 {
					whole.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(time.Second)
	writes := 0
	for i := 0; time.Now().Before(deadline); i++ {
		// Sizes vary, so a reader of a torn file would see a truncated one.
		if err := writeState(dir, bigState("x", plan.PhaseRunning, 16<<10+(i%7)*16<<10)); err != nil {
			t.Fatal(err)
		}
		writes++
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a reader met a partial file: %v", err)
	}
	if reads.Load() == 0 || whole.Load() == 0 {
		t.Errorf("the race did not happen: %d writes, %d reads, %d whole", writes, reads.Load(), whole.Load())
	}
	entries, err := os.ReadDir(plan.TaskDir(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "status.json" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	t.Logf("%d writes, %d reads", writes, reads.Load())
}

// A reader takes a status.json that does not decode for "not yet" for the grace, then
// fails the task whose file it is; a file that decodes again before that resets the
// count; a terminal state is final whatever is written later.
func TestStateReaderUnreadable(t *testing.T) {
	dir := t.TempDir()
	x := &plan.Task{Key: "x"}
	if err := mkdirShared(plan.TaskDir(dir, "x")); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newStateReader(dir)
	r.now = func() time.Time { return now }
	garbage := func() {
		t.Helper()
		if err := os.WriteFile(plan.StatusFile(dir, "x"), []byte(`{"key":"x","pha`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.read(x); st != nil {
		t.Fatalf("no file: got %+v", st)
	}
	garbage()
	if st := r.read(x); st != nil {
		t.Fatalf("unreadable just now: got %+v, want not yet", st)
	}
	now = now.Add(r.grace - time.Millisecond)
	if err := writeState(dir, &plan.TaskState{Key: "x", Phase: plan.PhaseRunning}); err != nil {
		t.Fatal(err)
	}
	if st := r.read(x); st == nil || st.Phase != plan.PhaseRunning {
		t.Fatalf("readable again: got %+v", st)
	}
	garbage()
	now = now.Add(r.grace - time.Millisecond)
	if st := r.read(x); st != nil {
		t.Fatalf("a new streak starts its own grace: got %+v", st)
	}
	now = now.Add(r.grace)
	st := r.read(x)
	if st == nil || st.Phase != plan.PhaseFailed || st.Key != "x" || !strings.Contains(st.Message, "status.json") {
		t.Fatalf("unreadable past the grace: got %+v, want x Failed naming its status.json", st)
	}
	if err := writeState(dir, &plan.TaskState{Key: "x", Phase: plan.PhaseSucceeded}); err != nil {
		t.Fatal(err)
	}
	if again := r.read(x); again != st {
		t.Errorf("a terminal state is final: got %+v after %+v", again, st)
	}
}

// The leader of a task reads its parents through the same reader: a parent's file
// forged to claim another task fails that parent, and a file over the bound fails it
// unread.
func TestStateReaderAttributes(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"x", "y"} {
		if err := mkdirShared(plan.TaskDir(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeJSON(plan.StatusFile(dir, "x"), plan.TaskState{Key: "y", Phase: plan.PhaseSucceeded}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plan.TaskDir(dir, "y"), "status.json"), []byte(strings.Repeat(" ", plan.MaxReportBytes+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var logged []string
	r := newStateReader(dir)
	r.logf = func(format string, args ...any) { logged = append(logged, format) }
	states := r.readAll(&plan.Plan{Tasks: []plan.Task{{Key: "x"}, {Key: "y"}}})
	if sx := states["x"]; sx == nil || sx.Key != "x" || sx.Phase != plan.PhaseFailed || !strings.Contains(sx.Message, "forging") {
		t.Errorf("x = %+v, want Failed as a forging attempt", sx)
	}
	if sy := states["y"]; sy == nil || sy.Phase != plan.PhaseFailed || sy.Reason != plan.ReasonResultLargerThanAllowedLimit {
		t.Errorf("y = %+v, want refused as too large", sy)
	}
	r.readAll(&plan.Plan{Tasks: []plan.Task{{Key: "x"}, {Key: "y"}}})
	if len(logged) != 2 {
		t.Errorf("each made-up state is logged once, got %d lines", len(logged))
	}
}
