package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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

// writeAtomic replaces path so that readers polling it never see a partial file.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
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

// readStates reads every task's state; tasks without a status.json are absent.
func readStates(p *plan.Plan, stateDir string) (map[string]*plan.TaskState, error) {
	states := make(map[string]*plan.TaskState, len(p.Tasks))
	for _, t := range p.Tasks {
		s, err := readState(stateDir, t.Key)
		if err != nil {
			return nil, err
		}
		if s != nil {
			states[t.Key] = s
		}
	}
	return states, nil
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
