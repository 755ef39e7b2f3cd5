package executor

import (
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
	"strings"
	"syscall"
	"time"

	"github.com/tektoncd/pipeline/pkg/entrypoint"
	"github.com/tektoncd/pipeline/pkg/platforms"
)

// platformCommandsEnv is set by Tekton's pod builder when a step's command was looked
// up in a multi-platform image: one command per platform.
const platformCommandsEnv = "TEKTON_PLATFORM_COMMANDS"

// errTaskOver ends a wait whose task reached a terminal state without this step.
var errTaskOver = errors.New("the task is already finished")

// command is the step's command line before substitution.
func command(cfg Config) ([]string, error) {
	if cfg.Entrypoint != "" {
		return append([]string{cfg.Entrypoint}, cfg.Args...), nil
	}
	env := os.Getenv(platformCommandsEnv)
	if env == "" {
		if len(cfg.Args) == 0 {
			return nil, errors.New("no -entrypoint, no " + platformCommandsEnv + " and no args: nothing to run")
		}
		return cfg.Args, nil
	}
	var cmds map[string][]string
	if err := json.Unmarshal([]byte(env), &cmds); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", platformCommandsEnv, err)
	}
	plat := platforms.NewPlatform().Format()
	cmd, ok := cmds[plat]
	if !ok {
		// The image may name the platform without its CPU variant.
		cmd, ok = cmds[plat[:strings.LastIndex(plat, "/")]]
	}
	if !ok {
		return nil, fmt.Errorf("could not find command for platform %q", plat)
	}
	return append(append([]string(nil), cmd...), cfg.Args...), nil
}

// waiter is Tekton's file waiter, polling fast enough for the hand-off budget, and
// aware that a task may end (be skipped) while its later steps still wait.
type waiter struct {
	interval time.Duration
	// taskDir is watched with the file's directory, for over.
	taskDir string
	over    func() bool
}

var _ entrypoint.Waiter = (*waiter)(nil)

func (w *waiter) Wait(ctx context.Context, file string, expectContent, breakpointOnFailure bool) error {
	if file == "" {
		return nil
	}
	interval := w.interval
	var dirs []string
	cancelWatch := file == entrypoint.DownwardMountCancelFile
	if cancelWatch {
		// Cancellation is not on the hand-off path, and a downward API file changes by
		// a symlink swap that a directory watch would not follow: poll slowly.
		interval = 50 * time.Millisecond
	} else {
		dirs = []string{filepath.Dir(file), w.taskDir}
	}
	err := waitFor(ctx, interval, dirs, func() (bool, error) {
		if info, err := os.Stat(file); err == nil {
			if !expectContent || info.Size() > 0 {
				return true, nil
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("waiting for %q: %w", file, err)
		}
		if _, err := os.Stat(file + ".err"); err == nil {
			if breakpointOnFailure {
				return true, nil
			}
			return false, entrypoint.ErrSkipPreviousStepFailed
		}
		if !cancelWatch && w.over != nil && w.over() {
			return false, errTaskOver
		}
		return false, nil
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return entrypoint.ErrContextDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return entrypoint.ErrContextCanceled
	}
	return err
}

// postWriter writes Tekton's post files. Unlike Tekton's it does not exit on error:
// the leader still has to publish the task's state.
type postWriter struct{}

func (postWriter) Write(file, content string) {
	if file == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o777); err != nil {
		log.Printf("creating the directory of %q: %v", file, err)
		return
	}
	if err := os.WriteFile(file, []byte(content), 0o666); err != nil {
		log.Printf("writing %q: %v", file, err)
	}
}

// deadlineKind tells which pipeline-level limit bounds a step, besides its own timeout.
type deadlineKind int

const (
	noDeadline deadlineKind = iota
	taskDeadline
	pipelineDeadline
	tasksDeadline
	finallyDeadline
)

// runner runs one step's command like Tekton's: own process group, signals forwarded,
// optional copies of stdout/stderr. It also enforces the task and pipeline deadlines
// and fails the step when run-time substitution failed, after the step's turn came.
type runner struct {
	stdoutPath, stderrPath string
	deadline               time.Time
	kind                   deadlineKind
	substErr               error
	onStart                func(time.Time)

	ran     bool
	started time.Time
	// hit is the pipeline-level deadline that ended the step, if any.
	hit deadlineKind
}

var _ entrypoint.Runner = (*runner)(nil)

func (r *runner) Run(ctx context.Context, args ...string) error {
	r.ran = true
	r.started = time.Now()
	if r.onStart != nil {
		r.onStart(r.started)
	}
	if r.substErr != nil {
		return r.substErr
	}
	if len(args) == 0 {
		return nil
	}
	stepCtx := ctx
	if r.kind != noDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, r.deadline)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole group: the container lives on for retries and later steps, so
	// nothing the step started may linger.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var err error
	if cmd.Stdout, err = teeTo(os.Stdout, r.stdoutPath); err != nil {
		return err
	}
	if cmd.Stderr, err = teeTo(os.Stderr, r.stderrPath); err != nil {
		return err
	}
	defer closeTee(cmd.Stdout)
	defer closeTee(cmd.Stderr)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return r.ctxErr(ctx, stepCtx, err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				// SIGURG is the Go runtime's own preemption signal.
				if s != syscall.SIGCHLD && s != syscall.SIGURG {
					_ = syscall.Kill(-cmd.Process.Pid, s.(syscall.Signal))
				}
			case <-done:
				return
			}
		}
	}()
	if err := cmd.Wait(); err != nil {
		return r.ctxErr(ctx, stepCtx, err)
	}
	return nil
}

// ctxErr maps a context ending to Tekton's errors, remembering which deadline hit.
func (r *runner) ctxErr(ctx, stepCtx context.Context, err error) error {
	switch {
	case errors.Is(stepCtx.Err(), context.DeadlineExceeded):
		return entrypoint.ErrContextDeadlineExceeded
	case errors.Is(stepCtx.Err(), context.Canceled):
		return entrypoint.ErrContextCanceled
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		r.hit = r.kind
		return entrypoint.ErrContextDeadlineExceeded
	}
	return err
}

type tee struct {
	io.Writer
	f *os.File
}

// teeTo adds a copy of a stream to path (Tekton's stdoutConfig/stderrConfig).
func teeTo(std *os.File, path string) (io.Writer, error) {
	if path == "" {
		return std, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return tee{Writer: io.MultiWriter(std, f), f: f}, nil
}

func closeTee(w io.Writer) {
	if t, ok := w.(tee); ok {
		t.f.Close()
	}
}

// exitCode of a finished process; a signal counts as 128+signal, as in a shell.
func exitCode(ee *exec.ExitError) int {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}
