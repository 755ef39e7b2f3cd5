package executor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tektoncd/pipeline/cmd/entrypoint/subcommands"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// runInit prepares the pod before any container starts: the binary every container
// runs, the pipeline's start time and one state directory per task (a subPath volume
// mount needs its directory to exist, and any user must be able to write there).
func runInit(cfg Config) error {
	p, err := loadPlan(cfg.PlanFile)
	if err != nil {
		return err
	}
	if cfg.Bin != "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(cfg.Bin), 0o755); err != nil {
			return err
		}
		var ok subcommands.OK
		if err := subcommands.Process([]string{subcommands.CopyCommand, self, cfg.Bin}); !errors.As(err, &ok) {
			return fmt.Errorf("copying %s to %s: %w", self, cfg.Bin, err)
		}
	}
	if err := mkdirShared(filepath.Join(cfg.StateDir, plan.RunDirName)); err != nil {
		return err
	}
	for _, t := range p.Tasks {
		dir := plan.TaskDir(cfg.StateDir, t.Key)
		for _, d := range []string{dir, filepath.Join(dir, stepsDirName), filepath.Join(dir, ackDirName), plan.ResultsDir(cfg.StateDir, t.Key)} {
			if err := mkdirShared(d); err != nil {
				return err
			}
		}
	}
	// O_EXCL: the start is written once, whatever happens to this container.
	f, err := os.OpenFile(plan.StartFile(cfg.StateDir), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runReport streams task states to stdout, one plan.ReportLine per change, until
// every task is terminal. The container log is the results transport: unlike
// termination messages it has no per-pod budget.
//
// What it prints is bounded and survives log rotation (docs/design.md, "The results
// channel"): states go through a plan.Folder, which refuses a state over the run's
// bounds (the task fails with Tekton's ResultLargerThanAllowedLimit) and keeps a
// terminal state final; state files are read only up to plan.MaxReportBytes; and
// snapshot lines re-print every terminal state whenever the log has grown by as much as
// the last snapshot took (at least minSnapshotBytes), or reportSnapshotPeriod after
// anything was printed, and once more before the final marker.
func runReport(cfg Config) error {
	p, err := loadPlan(cfg.PlanFile)
	if err != nil {
		return err
	}
	// No max-result-size here: it is a controller setting (Tekton's feature flag), which
	// the controller applies to what it reads.
	folder := p.NewFolder(plan.Limits{})
	out := &reportWriter{w: bufio.NewWriter(cfg.Stdout), period: cfg.ReportSnapshot, last: time.Now()}
	if out.period <= 0 {
		out.period = reportSnapshotPeriod
	}
	// A terminal state never changes; with large results it is not worth rereading.
	final := map[string]bool{}
	states := newStateReader(cfg.StateDir)
	states.logf = log.Printf
	return wait.PollUntilContextCancel(context.Background(), cfg.ReportPoll, true, func(context.Context) (bool, error) {
		all := true
		for _, t := range p.Tasks {
			if final[t.Key] {
				continue
			}
			st := reportedState(states, cfg.StateDir, &t)
			if st == nil {
				all = false
				continue
			}
			kept, changed := folder.Put(*st)
			final[t.Key] = kept.Phase.IsTerminal()
			all = all && final[t.Key]
			if changed {
				if err := out.line(plan.ReportLine{Task: &kept}); err != nil {
					return false, err
				}
			}
		}
		if all || out.due(time.Now()) {
			if err := out.snapshot(folder, time.Now()); err != nil {
				return false, err
			}
		}
		if all {
			if err := out.line(plan.ReportLine{Done: true}); err != nil {
				return false, err
			}
		}
		return all, out.w.Flush()
	})
}

// Snapshot pacing: see runReport.
const (
	minSnapshotBytes     = 256 << 10
	reportSnapshotPeriod = 10 * time.Second
)

// reportWriter prints report lines and decides when a snapshot is due. Snapshots cost
// at most as many bytes as the lines printed between them (plus the last one), so the
// reporter's whole output stays within twice what the state changes themselves take.
type reportWriter struct {
	w      *bufio.Writer
	period time.Duration
	// since counts the bytes printed since the last snapshot, size what it took, and
	// last when it was printed.
	since, size int
	last        time.Time
}

func (r *reportWriter) line(l plan.ReportLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	r.since += len(b) + 1
	if _, err := r.w.Write(b); err != nil {
		return err
	}
	return r.w.WriteByte('\n')
}

// due tells whether the log may have been rotated since the last snapshot without one
// following: it grew by as much as the last snapshot took, or anything was printed a
// period ago.
func (r *reportWriter) due(now time.Time) bool {
	return r.since > 0 && (r.since >= max(minSnapshotBytes, r.size) || now.Sub(r.last) >= r.period)
}

func (r *reportWriter) snapshot(f *plan.Folder, now time.Time) error {
	size := 0
	for _, l := range f.Snapshot() {
		before := r.since
		if err := r.line(l); err != nil {
			return err
		}
		size += r.since - before
	}
	r.since, r.size, r.last = 0, size, now
	return nil
}

// reportedState reads what task t's own state directory says, through the run's
// stateReader: attributed to t (a forged file fails t, see attribute), in bounded memory
// (a status.json over plan.MaxReportBytes fails t without being read), and an unreadable
// one fails t once it stays so for the reader's grace. Live step states over the bound
// are left out. Nil when t has no state yet.
func reportedState(states *stateReader, stateDir string, t *plan.Task) *plan.TaskState {
	st := states.read(t)
	if st == nil {
		return nil
	}
	if !terminal(st) {
		// The leader folds step states in at the end; meanwhile show them live. A copy:
		// the reader's states are its own.
		live := *st
		live.Steps = liveSteps(stateDir, t)
		return &live
	}
	return st
}

func liveSteps(stateDir string, t *plan.Task) []plan.StepState {
	var out []plan.StepState
	for j := range t.Steps {
		var st plan.StepState
		if ok, _ := readJSONBounded(plan.StepFile(stateDir, t.Key, j), &st); ok {
			out = append(out, st)
		}
	}
	return out
}

// tooBig is the error of a file over the bound it was read with.
type tooBig struct {
	path string
	max  int
}

func (e *tooBig) Error() string { return fmt.Sprintf("%s is over %d bytes", e.path, e.max) }

// readJSONBounded is readJSON reading at most plan.MaxReportBytes: a step may write
// anything into its task's state directory.
func readJSONBounded(path string, v any) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, plan.MaxReportBytes+1))
	if err != nil {
		return false, err
	}
	if len(b) > plan.MaxReportBytes {
		return false, &tooBig{path: path, max: plan.MaxReportBytes}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decoding %s: %w", path, err)
	}
	return true, nil
}

// runSidecar runs a sidecar for as long as its task is not terminal. Tekton stops
// sidecars when the TaskRun ends; in a shared pod that is when the task ends, which
// only the state volume knows.
func runSidecar(cfg Config) error {
	args, err := command(cfg)
	if err != nil {
		return err
	}
	// Never cancelled: the sidecar's life is bounded by its task's state and by the
	// signals relayed below, and stop gives it its grace period.
	cmd := exec.CommandContext(context.Background(), args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	go func() {
		for s := range sigs {
			_ = syscall.Kill(-cmd.Process.Pid, s.(syscall.Signal))
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan struct{})
	// Its task's state as the reporter reads it: a file that stays unreadable ends the
	// task there, and so the sidecar here.
	own, states := &plan.Task{Key: cfg.Task}, newStateReader(cfg.StateDir)
	go func() {
		defer close(ended)
		err := waitFor(ctx, 4*cfg.Poll, []string{plan.TaskDir(cfg.StateDir, cfg.Task)}, func() (bool, error) {
			return terminal(states.read(own)), nil
		})
		if err != nil && ctx.Err() == nil {
			log.Print(err)
		}
	}()
	select {
	case err := <-exited:
		// A sidecar's end never fails its task (Tekton ignores sidecar exits).
		if err != nil {
			log.Printf("sidecar exited: %v", err)
		}
	case <-ended:
		// Its exit status is dropped: it was stopped on purpose.
		_ = stop(cmd, exited, cfg.SidecarGrace)
	}
	return nil
}

// stop ends a sidecar that outlived its task and returns how it exited.
func stop(cmd *exec.Cmd, exited chan error, grace time.Duration) error {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case err := <-exited:
		return err
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return <-exited
	}
}
