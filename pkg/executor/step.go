package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	steptypes "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1/types"
	"github.com/tektoncd/pipeline/pkg/credentials/dockercreds"
	"github.com/tektoncd/pipeline/pkg/credentials/gitcreds"
	credwriter "github.com/tektoncd/pipeline/pkg/credentials/writer"
	"github.com/tektoncd/pipeline/pkg/entrypoint"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// StepState reasons. The Tekton ones come from its entrypoint and TaskRun vocabulary;
// Completed and Error are the container reasons Kubernetes would report.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonSkipped   = entrypoint.TerminationReasonSkipped
	// ReasonTimeoutExceeded: the step's own timeout.
	ReasonTimeoutExceeded = entrypoint.TerminationReasonTimeoutExceeded
	// ReasonCancelled: the pod was asked to cancel (Tekton's cancel file).
	ReasonCancelled = entrypoint.TerminationReasonCancelled
)

// Reasons a step killed by a task or pipeline-level deadline gets; Tekton gives the
// steps of a timed-out or cancelled TaskRun the TaskRun's reason.
var (
	reasonTaskTimeout = v1.TaskRunReasonTimedOut.String()
	reasonTaskCancel  = v1.TaskRunReasonCancelled.String()
)

// resultsViaStateVolume is the Entrypointer's ResultExtractionMethod here: results
// and artifacts reach the controller through the state volume and the reporter.
const resultsViaStateVolume = "pipelineinpod-state-volume"

type step struct {
	cfg  Config
	plan *plan.Plan
	task *plan.Task
	name string
	// env is the container's environment before substitution, restored every attempt
	// because $(context.task.retry-count) changes.
	env []string

	// info is the attempt this step runs; cur (leader only) the task's state.
	info attemptInfo
	cur  *plan.TaskState
	// states reads the other tasks' states.
	states *stateReader
}

func runStep(cfg Config) (int, error) {
	p, err := loadPlan(cfg.PlanFile)
	if err != nil {
		return 1, err
	}
	t, ok := p.Task(cfg.Task)
	if !ok {
		return 1, fmt.Errorf("task %q is not in the plan", cfg.Task)
	}
	if cfg.Step < 0 || cfg.Step >= len(t.Steps) {
		return 1, fmt.Errorf("task %q has no step %d", cfg.Task, cfg.Step)
	}
	if cfg.CancelFile != "" {
		entrypoint.DownwardMountCancelFile = cfg.CancelFile
	}
	if cfg.ScriptsDir != "" {
		entrypoint.ScriptDir = cfg.ScriptsDir
	}
	s := &step{cfg: cfg, plan: p, task: t, name: cfg.StepName, env: os.Environ(), states: newStateReader(cfg.StateDir)}
	if s.name == "" {
		// Not Tekton's pod.TrimStepPrefix: its package brings the pod builder and the
		// cloud registries' clients (some 200 packages) into this binary, which init
		// copies into every pod.
		s.name = strings.TrimPrefix(t.Steps[cfg.Step], "step-")
	}
	if err := s.linkStepDir(); err != nil {
		return 1, err
	}
	if cfg.Creds {
		writeCreds()
	}
	return s.run()
}

// failTask publishes a leader's own failure: without a terminal state every task
// after this one, the sidecars and the reporter would wait forever.
func failTask(cfg Config, cause error) {
	if st, _ := readState(cfg.StateDir, cfg.Task); terminal(st) {
		return
	}
	now := metav1.Now()
	st := &plan.TaskState{
		Key: cfg.Task, Phase: plan.PhaseFailed, Reason: v1.TaskRunReasonFailed.String(),
		Message: "pipelineinpod entrypoint: " + cause.Error(), CompletionTime: &now,
	}
	if err := writeState(cfg.StateDir, st); err != nil {
		log.Printf("publishing the failure of task %q: %v", cfg.Task, err)
	}
}

// linkStepDir does for this step what Tekton's step-init does for a whole pod:
// /tekton/steps is per task here, so no single init container can fill it.
func (s *step) linkStepDir() error {
	if s.cfg.StepMetadataDir == "" || s.cfg.StepsDir == "" {
		return nil
	}
	if err := os.MkdirAll(s.cfg.StepsDir, 0o777); err != nil {
		return err
	}
	for _, n := range []string{entrypoint.GetContainerName(s.name), strconv.Itoa(s.cfg.Step)} {
		if err := os.Symlink(s.cfg.StepMetadataDir, filepath.Join(s.cfg.StepsDir, n)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

func writeCreds() {
	for _, w := range []credwriter.Writer{dockercreds.NewBuilder(), gitcreds.NewBuilder()} {
		if err := w.Write(entrypoint.CredsDir); err != nil {
			log.Printf("initializing credentials: %v", err)
		}
	}
	if err := credwriter.CopyCredsToHome(credwriter.CredsInitCredentials); err != nil {
		log.Printf("copying credentials to $HOME: %v", err)
	}
}

func (s *step) leader() bool { return s.cfg.Step == 0 }

// taskDir is what to watch for changes of this task's status or attempt.
func (s *step) taskDir() []string { return []string{plan.TaskDir(s.cfg.StateDir, s.task.Key)} }

func (s *step) run() (int, error) {
	code := 0
	for k := 0; ; k++ {
		if s.leader() {
			if k == 0 {
				run, err := s.gate()
				if err != nil || !run {
					return 0, err
				}
			}
		} else {
			info, run, err := s.waitAttempt(k)
			if err != nil || !run {
				return code, err
			}
			s.info = info
		}
		st, c := s.attempt(k)
		code = c
		if err := writeJSON(plan.StepFile(s.cfg.StateDir, s.task.Key, s.cfg.Step), st); err != nil {
			return 1, err
		}
		var retry bool
		var err error
		if s.leader() {
			retry, err = s.finish(k)
		} else {
			retry, err = s.waitOutcome(k)
			if err == nil && retry {
				err = s.prepareRetry(k + 1)
			}
		}
		if err != nil || !retry {
			return code, err
		}
	}
}

// gate waits for the task's DAG parents and decides; it reports whether to run.
func (s *step) gate() (bool, error) {
	start, err := readStart(s.cfg.StateDir)
	if err != nil {
		return false, err
	}
	var dirs []string
	for _, k := range s.task.RunAfter {
		dirs = append(dirs, plan.TaskDir(s.cfg.StateDir, k))
	}
	var parents []*plan.Task
	for _, k := range s.task.RunAfter {
		t, ok := s.plan.Task(k)
		if !ok {
			return false, fmt.Errorf("task %q runs after %q, which is not in the plan", s.task.Key, k)
		}
		parents = append(parents, t)
	}
	err = waitFor(context.Background(), s.cfg.Poll, dirs, func() (bool, error) {
		for _, t := range parents {
			if !terminal(s.states.read(t)) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return false, err
	}
	states := s.states.readAll(s.plan)
	now := time.Now()
	d := decide(gateInput{
		plan: s.plan, task: s.task, states: states, start: start, now: now,
		cancelled: hasContent(s.cfg.CancelFile),
	})
	mnow := metav1.NewTime(now)
	ts := &plan.TaskState{Key: s.task.Key}
	switch {
	case d.skip != "":
		ts.Phase, ts.Reason, ts.CompletionTime = plan.PhaseSkipped, string(d.skip), &mnow
		return false, writeState(s.cfg.StateDir, ts)
	case d.failReason != "":
		ts.Phase, ts.Reason, ts.Message = plan.PhaseFailed, d.failReason, d.failMessage
		ts.StartTime, ts.CompletionTime = &mnow, &mnow
		return false, writeState(s.cfg.StateDir, ts)
	}
	ts.Phase, ts.StartTime = plan.PhaseRunning, &mnow
	s.cur = ts
	s.info = attemptInfo{Start: now}
	if s.task.Finally {
		s.info.FinallyStart = &now
	}
	if err := writeState(s.cfg.StateDir, ts); err != nil {
		return false, err
	}
	return true, writeJSON(attemptFile(s.cfg.StateDir, s.task.Key), s.info)
}

// hasContent: a downward API file exists, empty, while its annotation is unset.
func hasContent(path string) bool {
	if path == "" {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && fi.Size() > 0
}

// waitAttempt (steps after the first) waits until attempt k may run, or the task ended.
func (s *step) waitAttempt(k int) (attemptInfo, bool, error) {
	var info attemptInfo
	run := false
	err := waitFor(context.Background(), s.cfg.Poll, s.taskDir(), func() (bool, error) {
		ok, err := readJSON(attemptFile(s.cfg.StateDir, s.task.Key), &info)
		if err != nil {
			return false, err
		}
		if ok && info.Attempt >= k {
			run = true
			return true, nil
		}
		st, err := readState(s.cfg.StateDir, s.task.Key)
		return terminal(st), err
	})
	return info, run, err
}

// waitOutcome (steps after the first) waits for the leader's verdict on attempt k.
func (s *step) waitOutcome(k int) (bool, error) {
	retry := false
	err := waitFor(context.Background(), s.cfg.Poll, s.taskDir(), func() (bool, error) {
		st, err := readState(s.cfg.StateDir, s.task.Key)
		if err != nil || st == nil {
			return false, err
		}
		retry = !terminal(st) && st.RetryCount > k
		return terminal(st) || retry, nil
	})
	return retry, err
}

// prepareRetry removes this step's traces of the failed attempt, then tells the
// leader: a stale post file would let the next step start too early.
func (s *step) prepareRetry(next int) error {
	if err := s.clean(); err != nil {
		return err
	}
	return writeAtomic(ackFile(s.cfg.StateDir, s.task.Key, s.cfg.Step), []byte(strconv.Itoa(next)))
}

func (s *step) clean() error {
	if p := s.cfg.PostFile; p != "" {
		if err := removeIfExists(p); err != nil {
			return err
		}
		if err := removeIfExists(p + ".err"); err != nil {
			return err
		}
	}
	if d := s.cfg.StepMetadataDir; d != "" {
		for _, sub := range []string{"results", "artifacts"} {
			if err := removeContents(filepath.Join(d, sub)); err != nil {
				return err
			}
		}
		if err := removeIfExists(filepath.Join(d, "exitCode")); err != nil {
			return err
		}
	}
	return nil
}

// attempt runs this step once through Tekton's Entrypointer.
func (s *step) attempt(k int) (plan.StepState, int) {
	cfg := s.cfg
	var substErr error
	keep := func(err error) {
		if err != nil && substErr == nil {
			substErr = err
		}
	}
	vals := newValues(s.plan, s.task, s.states.readAll(s.plan), k)

	os.Clearenv()
	for _, kv := range s.env {
		name, val, _ := strings.Cut(kv, "=")
		val, err := vals.string(val)
		keep(err)
		os.Setenv(name, val)
	}
	cmd, err := command(cfg)
	keep(err)
	if cmd, err = vals.args(cmd); err != nil {
		keep(err)
	} else if cmd, err = s.script(cmd, vals, k); err != nil {
		keep(err)
	}
	if cfg.WorkDir != "" {
		wd, err := vals.string(cfg.WorkDir)
		keep(err)
		if err == nil {
			keep(os.MkdirAll(wd, 0o777))
			keep(os.Chdir(wd))
		}
	}
	// The Entrypointer's own copy of the when types (pkg/apis/pipeline/v1/types).
	var when steptypes.StepWhenExpressions
	if cfg.WhenExpressions != "" {
		if err := json.Unmarshal([]byte(cfg.WhenExpressions), &when); err != nil {
			keep(fmt.Errorf("decoding -when_expressions: %w", err))
		}
		when = when.ReplaceVariables(vals.str, vals.arr)
	}
	// Only the final attempt's termination message may reach the pod status.
	if cfg.TerminationPath != "" {
		if err := os.Truncate(cfg.TerminationPath, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			keep(err)
		}
	}

	dl, kind := s.deadline()
	r := &runner{
		stdoutPath: cfg.StdoutPath, stderrPath: cfg.StderrPath,
		deadline: dl, kind: kind, substErr: substErr,
		onStart: func(t time.Time) {
			mt := metav1.NewTime(t)
			st := plan.StepState{Name: s.name, Container: s.task.Steps[cfg.Step], StartTime: &mt}
			if err := writeJSON(plan.StepFile(cfg.StateDir, s.task.Key, cfg.Step), st); err != nil {
				log.Print(err)
			}
		},
	}
	timeout := cfg.Timeout
	e := entrypoint.Entrypointer{
		Command:         cmd,
		WaitFiles:       cfg.WaitFiles,
		WaitFileContent: cfg.WaitFileContent,
		PostFile:        cfg.PostFile,
		TerminationPath: cfg.TerminationPath,
		Waiter: &waiter{interval: cfg.Poll, taskDir: s.taskDir()[0], over: func() bool {
			st, _ := readState(cfg.StateDir, s.task.Key)
			return terminal(st)
		}},
		Runner:     r,
		PostWriter: postWriter{},
		// Results and StepResults stay empty: Tekton would copy them into the
		// termination message, which a pod shares among all its containers (hazard 3).
		// The leader publishes them through the state volume instead.
		Timeout:         &timeout,
		OnError:         cfg.OnError,
		StepMetadataDir: cfg.StepMetadataDir,
		// Not "termination-message": the Entrypointer would add artifacts to the
		// message and exit the process if it grew too long, before this step's state
		// is published.
		ResultExtractionMethod:     resultsViaStateVolume,
		StepWhenExpressions:        when,
		CompressTerminationMessage: cfg.CompressTerminationMessage,
	}
	err = e.Go()
	// A step's own exit status is its outcome, published in its state; like Tekton's
	// entrypoint, say nothing of it in the step's log, which is the step's output.
	var exited *exec.ExitError
	if err != nil && r.ran && !errors.As(err, &exited) {
		log.Printf("step %q: %v", s.name, err)
	}
	return s.outcome(err, r)
}

// script substitutes run-time references in a script placed by Tekton: the scripts
// volume is shared and frozen, so the substituted copy goes into this step's own run
// directory.
func (s *step) script(cmd []string, vals *values, k int) ([]string, error) {
	if len(cmd) == 0 || s.cfg.ScriptsDir == "" || filepath.Dir(cmd[0]) != filepath.Clean(s.cfg.ScriptsDir) {
		return cmd, nil
	}
	b, err := os.ReadFile(cmd[0])
	if err != nil || !strings.Contains(string(b), "$(") {
		return cmd, nil //nolint:nilerr // an unreadable script runs as placed, and running it reports the real failure
	}
	out, err := vals.string(string(b))
	if err != nil || out == string(b) {
		return cmd, err
	}
	dir := os.TempDir()
	if s.cfg.PostFile != "" {
		dir = filepath.Dir(s.cfg.PostFile)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d", filepath.Base(cmd[0]), k))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return cmd, err
	}
	if err := os.WriteFile(path, []byte(out), 0o755); err != nil {
		return cmd, err
	}
	return append([]string{path}, cmd[1:]...), nil
}

// deadline is the earliest of the task timeout (from this attempt's start) and the
// pipeline's timeouts; the step's own -timeout is applied by the Entrypointer.
func (s *step) deadline() (time.Time, deadlineKind) {
	var at time.Time
	kind := noDeadline
	consider := func(from time.Time, d *metav1.Duration, k deadlineKind) {
		if d == nil || d.Duration <= 0 {
			return
		}
		if t := from.Add(d.Duration); kind == noDeadline || t.Before(at) {
			at, kind = t, k
		}
	}
	consider(s.info.Start, s.task.Timeout, taskDeadline)
	if start, err := readStart(s.cfg.StateDir); err == nil {
		consider(start, s.plan.PipelineTimeout, pipelineDeadline)
		if !s.task.Finally {
			consider(start, s.plan.TasksTimeout, tasksDeadline)
		}
	}
	if s.task.Finally && s.info.FinallyStart != nil {
		consider(*s.info.FinallyStart, s.plan.FinallyTimeout, finallyDeadline)
	}
	return at, kind
}

// outcome turns the Entrypointer's result into the step's state and exit code, the
// way Tekton's entrypoint main and pod status conversion would.
func (s *step) outcome(err error, r *runner) (plan.StepState, int) {
	now := metav1.Now()
	st := plan.StepState{Name: s.name, Container: s.task.Steps[s.cfg.Step], CompletionTime: &now}
	if r.ran {
		t := metav1.NewTime(r.started)
		st.StartTime = &t
	}
	code := 0
	set := func(reason string, exit int) {
		st.Reason = reason
		e := int32(exit) //nolint:gosec // exit statuses are -1, 0-255 or 128+signal
		st.ExitCode = &e
	}
	var ee *exec.ExitError
	switch {
	case errors.Is(err, entrypoint.ErrSkipPreviousStepFailed) || errors.Is(err, errTaskOver):
		st.Reason = ReasonSkipped
	case r.hit == taskDeadline:
		set(reasonTaskTimeout, 1)
		code = 1
	case r.hit != noDeadline:
		set(reasonTaskCancel, 1)
		code = 1
	case errors.Is(err, entrypoint.ErrContextDeadlineExceeded):
		set(ReasonTimeoutExceeded, 1)
		code = 1
	case errors.Is(err, entrypoint.ErrContextCanceled):
		code = int(syscall.SIGKILL)
		set(ReasonCancelled, code)
	case errors.As(err, &ee):
		c := exitCode(ee)
		if s.cfg.OnError == entrypoint.ContinueOnError {
			set(ReasonCompleted, c)
		} else {
			set(ReasonError, c)
			code = c
		}
	case err != nil:
		log.Printf("step %q: %v", s.name, err)
		set(ReasonError, 1)
		code = 1
	case !r.ran:
		// Its own when expressions were false.
		set(ReasonSkipped, 0)
	default:
		set(ReasonCompleted, 0)
	}
	st.Results = s.stepResults()
	return st, code
}

// stepResults reads what the step wrote to $(step.results.<name>.path).
func (s *step) stepResults() []v1.TaskRunResult {
	if s.cfg.StepMetadataDir == "" {
		return nil
	}
	dir := filepath.Join(s.cfg.StepMetadataDir, "results")
	names := s.cfg.StepResults
	if len(names) == 0 {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			names = append(names, e.Name())
		}
	}
	var out []v1.TaskRunResult
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if n == "" || err != nil {
			continue
		}
		var v v1.ResultValue
		_ = v.UnmarshalJSON(b)
		out = append(out, v1.TaskRunResult{Name: n, Type: v1.ResultsType(v.Type), Value: v})
	}
	return out
}
