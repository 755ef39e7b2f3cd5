package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// Files inside a task's state directory that only the entrypoints read. They carry
// what plan.TaskState cannot: metav1.Time keeps whole seconds, too coarse for timeouts
// and for telling attempts apart.
const (
	// attemptFileName holds an attemptInfo, written by the leader when attempt N may run.
	attemptFileName = ".attempt"
	// ackDirName holds one file per step index > 0, containing the attempt number that
	// step has cleaned up for; the leader starts a retry only once every step has.
	ackDirName   = ".ack"
	stepsDirName = "steps"
)

// attemptInfo says which attempt of a task may run and when it started.
type attemptInfo struct {
	Attempt int       `json:"attempt"`
	Start   time.Time `json:"start"`
	// FinallyStart is when the finally part of the pipeline started (finally tasks only).
	FinallyStart *time.Time `json:"finallyStart,omitempty"`
}

// mkdirShared creates dir world-writable: step containers of one task may run as
// different users and all of them write into the task's state directory.
func mkdirShared(dir string) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	return os.Chmod(dir, 0o777)
}

// writeAtomic replaces path so that readers polling it never see a partial file: the
// data goes to a temporary file in path's own directory (rename is atomic only within
// one filesystem), which then replaces path. The temporary name is unique: every
// container of a pod has its own PID namespace, so a PID does not tell writers apart.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		return err
	}
	// Not os.CreateTemp: its files are 0600, and the pod's other containers may run as
	// other users; a chmod would cost a system call on the hand-off path.
	var f *os.File
	var err error
	for range 10 {
		f, err = os.OpenFile(fmt.Sprintf("%s.tmp-%016x", path, rand.Uint64()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644) //nolint:gosec // a unique name, not a secret: O_EXCL catches a collision
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeAtomic(path, b)
}

// readJSON returns false when the file does not exist yet.
func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decoding %s: %w", path, err)
	}
	return true, nil
}

func readState(stateDir, key string) (*plan.TaskState, error) {
	s := &plan.TaskState{}
	ok, err := readJSON(plan.StatusFile(stateDir, key), s)
	if !ok || err != nil {
		return nil, err
	}
	return s, nil
}

func writeState(stateDir string, s *plan.TaskState) error {
	return writeJSON(plan.StatusFile(stateDir, s.Key), s)
}

// unreadableGrace bounds how long a reader takes another task's status.json that cannot
// be read or decoded for "not yet" before it fails that task (stateReader).
const unreadableGrace = 2 * time.Second

// stateReader reads the tasks' status.json for one entrypoint process, so that nothing a
// task's directory holds can fail any task but that one. Entrypoints replace the file
// atomically (writeAtomic), so a reader meets a partial or undecodable file only when
// something else wrote it in place: an older entrypoint, or a step of that task (its
// state directory is writable to its steps). Such a file is "not yet" (the task has no
// state) while it stays unreadable for less than grace, to let a writer finish; past
// that, the task whose directory it is in fails, terminally, naming the file. What a
// file says about itself is attributed as the reporter attributes it (attribute), and a
// file over plan.MaxReportBytes fails its task unread (readJSONBounded). A terminal state
// is final (plan.TaskState): once seen it is kept, so a later rewrite cannot change what
// this process decided from it.
type stateReader struct {
	dir   string
	grace time.Duration
	now   func() time.Time
	final map[string]*plan.TaskState
	// badSince is when each task's file was first unreadable, in its current streak.
	badSince map[string]time.Time
	// logf, when set, is told of every state the reader makes up to fail a task (once
	// per task: such a state is terminal).
	logf func(format string, args ...any)
}

func newStateReader(dir string) *stateReader {
	return &stateReader{dir: dir, grace: unreadableGrace, now: time.Now, final: map[string]*plan.TaskState{}, badSince: map[string]time.Time{}}
}

// read returns task t's state, nil while it has none. Callers must not modify it.
func (r *stateReader) read(t *plan.Task) *plan.TaskState {
	if st, ok := r.final[t.Key]; ok {
		return st
	}
	st := &plan.TaskState{}
	ok, err := readJSONBounded(plan.StatusFile(r.dir, t.Key), st)
	var big *tooBig
	switch {
	case errors.As(err, &big):
		refused := plan.Refused(plan.TaskState{Key: t.Key}, fmt.Sprintf("task %q: its state file is over %d bytes, more than the reported states of one run may take in all", t.Key, big.max))
		st = r.madeUp(&refused)
	case err != nil:
		since, seen := r.badSince[t.Key]
		now := r.now()
		if !seen {
			r.badSince[t.Key], since = now, now
		}
		if now.Sub(since) < r.grace {
			return nil
		}
		mnow := metav1.NewTime(now)
		st = r.madeUp(&plan.TaskState{
			Key: t.Key, Phase: plan.PhaseFailed, Reason: v1.TaskRunReasonFailed.String(), CompletionTime: &mnow,
			Message: fmt.Sprintf("task %q: its status.json stayed unreadable for %s (%v): only the task's entrypoints may write it, and they replace it whole", t.Key, r.grace, err),
		})
	case !ok:
		delete(r.badSince, t.Key)
		return nil
	default:
		delete(r.badSince, t.Key)
		var forged bool
		if st, forged = attribute(t, st); forged {
			st = r.madeUp(st)
		}
	}
	if terminal(st) {
		r.final[t.Key] = st
	}
	return st
}

func (r *stateReader) madeUp(st *plan.TaskState) *plan.TaskState {
	if r.logf != nil {
		r.logf("%s", st.Message)
	}
	return st
}

// readAll reads every task's state; tasks without one are absent.
func (r *stateReader) readAll(p *plan.Plan) map[string]*plan.TaskState {
	states := make(map[string]*plan.TaskState, len(p.Tasks))
	for i := range p.Tasks {
		if st := r.read(&p.Tasks[i]); st != nil {
			states[p.Tasks[i].Key] = st
		}
	}
	return states
}

func terminal(s *plan.TaskState) bool { return s != nil && s.Phase.IsTerminal() }

func attemptFile(stateDir, key string) string {
	return filepath.Join(plan.TaskDir(stateDir, key), attemptFileName)
}

func ackFile(stateDir, key string, step int) string {
	return filepath.Join(plan.TaskDir(stateDir, key), ackDirName, strconv.Itoa(step))
}

func readStart(stateDir string) (time.Time, error) {
	b, err := os.ReadFile(plan.StartFile(stateDir))
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the pipeline start: %w", err)
	}
	return time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
}

func loadPlan(path string) (*plan.Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	return plan.Decode(b)
}

// removeContents empties dir, keeping dir itself (it may be a mount point).
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
