package executor_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// halfWritten is the start of a status.json, as a reader meets a file that a writer
// replaces in place (an old entrypoint, or a step writing into its own state directory).
const halfWritten = `{"key":"x","phase":"Runn`

// TestHalfWrittenStateBlamesNoReader: while task x's status.json is half written, task
// z's leader gates and its step runs, both reading every task's state. Before the fix
// the decoding error failed z, a task that does not even depend on x. Now a file that
// does not decode is "not yet" for a bounded time, and x's leader, which then writes a
// whole state, ends x as usual.
func TestHalfWrittenStateBlamesNoReader(t *testing.T) {
	t.Parallel()
	pd := newPod(t, &plan.Plan{},
		ttask{Task: task("w"), steps: []tstep{sh("sleep 0.4")}},
		ttask{Task: task("x"), steps: []tstep{sh("printf '" + halfWritten + "' > $ROOT/state/x/status.json\nsleep 1.2")}},
		ttask{Task: task("z", "w"), steps: []tstep{sh("echo z ran > $ROOT/z")}},
	)
	r := pd.run()
	want := map[string]string{"w": succeeded, "x": succeeded, "z": succeeded}
	if d := cmp.Diff(want, r.phases()); d != "" {
		t.Errorf("phases (-want +got):\n%s\nz: %s", d, r.states["z"].Message)
	}
	if got := pd.read("z"); got != "z ran\n" {
		t.Errorf("z's step wrote %q", got)
	}
	if !r.done {
		t.Error("the reporter never wrote its done marker")
	}
}

// TestUnreadableStateFailsItsWriter: task x's status.json stays unreadable past the
// bound. The failure is x's, in the reporter's account and in the decision of x's
// dependent z, which is skipped as after any failed parent, never failed itself; a
// task that does not depend on x runs.
func TestUnreadableStateFailsItsWriter(t *testing.T) {
	t.Parallel()
	pd := newPod(t, &plan.Plan{},
		ttask{Task: task("x"), steps: []tstep{sh("printf '" + halfWritten + "' > $ROOT/state/x/status.json\nsleep 3.5")}},
		ttask{Task: task("z", "x"), steps: []tstep{sh("echo z ran > $ROOT/z")}},
		ttask{Task: task("free"), steps: []tstep{sh("sleep 2.5")}},
	)
	r := pd.run()
	sx := r.states["x"]
	if sx.Phase != plan.PhaseFailed || !strings.Contains(sx.Message, "status.json") || !strings.Contains(sx.Message, `"x"`) {
		t.Errorf("x = %s/%s %q, want Failed naming its unreadable status.json", sx.Phase, sx.Reason, sx.Message)
	}
	if sz := r.states["z"]; sz.Phase != plan.PhaseSkipped {
		t.Errorf("z = %s/%s %q, want Skipped: its parent failed", sz.Phase, sz.Reason, sz.Message)
	}
	if got := r.states["free"].Phase; got != plan.PhaseSucceeded {
		t.Errorf("free = %s %q, want Succeeded", got, r.states["free"].Message)
	}
	if !r.done {
		t.Error("the reporter never wrote its done marker")
	}
}
