package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
func runReport(cfg Config) error {
	p, err := loadPlan(cfg.PlanFile)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(cfg.Stdout)
	last := map[string][]byte{}
	// A terminal state never changes; with large results it is not worth rereading.
	final := map[string]bool{}
	emit := func(l plan.ReportLine) error {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		if l.Task != nil {
			if bytes.Equal(last[l.Task.Key], b) {
				return nil
			}
			last[l.Task.Key] = b
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return w.WriteByte('\n')
	}
	return wait.PollUntilContextCancel(context.Background(), cfg.ReportPoll, true, func(context.Context) (bool, error) {
		all := true
		for _, t := range p.Tasks {
			if final[t.Key] {
				continue
			}
			st, err := readState(cfg.StateDir, t.Key)
			if err != nil {
				log.Print(err)
			}
			if st == nil {
				all = false
				continue
			}
			st, forged := attribute(&t, st)
			if forged {
				log.Print(st.Message)
			}
			final[t.Key] = terminal(st)
			if !terminal(st) {
				all = false
				// The leader folds step states in at the end; meanwhile show them live.
				st.Steps = liveSteps(cfg.StateDir, &t)
			}
			if err := emit(plan.ReportLine{Task: st}); err != nil {
				return false, err
			}
		}
		if all {
			if err := emit(plan.ReportLine{Done: true}); err != nil {
				return false, err
			}
		}
		return all, w.Flush()
	})
}

func liveSteps(stateDir string, t *plan.Task) []plan.StepState {
	var out []plan.StepState
	for j := range t.Steps {
		var st plan.StepState
		if ok, _ := readJSON(plan.StepFile(stateDir, t.Key, j), &st); ok {
			out = append(out, st)
		}
	}
	return out
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
	go func() {
		defer close(ended)
		err := waitFor(ctx, 4*cfg.Poll, []string{plan.TaskDir(cfg.StateDir, cfg.Task)}, func() (bool, error) {
			st, err := readState(cfg.StateDir, cfg.Task)
			if err != nil {
				log.Print(err)
			}
			return terminal(st), nil
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
