package executor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/platforms"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// bin is the entrypoint binary, built once: the tests run it as real processes, one
// per container, over temporary directories laid out like the pod.
var bin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "pip-entrypoint")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "entrypoint")
		// go test caches on the files a test touches; the binary also depends on this one.
		if _, err := os.Stat("../../cmd/entrypoint/main.go"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		out, err := exec.CommandContext(context.Background(), "go", "build", "-o", bin, "github.com/pipelineinpod/pipelineinpod/cmd/entrypoint").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building the entrypoint: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

// tstep is one step container.
type tstep struct {
	name string
	// script becomes a file in the scripts directory run by /bin/sh, as Tekton's
	// place-scripts would write it; otherwise command runs as -entrypoint + args.
	script  string
	command []string
	onError string
	timeout time.Duration
	env     []string
	workdir string
	when    string
}

// ttask is a plan task with its step (and sidecar) containers.
type ttask struct {
	plan.Task
	steps   []tstep
	sidecar string
	// sidecarLookedUp runs the sidecar as one without command whose image's command was
	// looked up: no -entrypoint, the command in TEKTON_PLATFORM_COMMANDS.
	sidecarLookedUp bool
}

// pod lays out the directories a real pod would mount, per container.
type pod struct {
	t     testing.TB
	root  string
	state string
	plan  *plan.Plan
	tasks []ttask
	// extra args for every step container (e.g. -pip_poll).
	extra []string
}

// containerRun is one finished container.
type containerRun struct {
	name   string
	code   int
	stdout string
	stderr string
}

type podRun struct {
	states    map[string]plan.TaskState
	done      bool
	reportRaw string
	exit      map[string]int
	logs      map[string]*containerRun
}

func newPod(t testing.TB, p *plan.Plan, tasks ...ttask) *pod {
	t.Helper()
	root := t.TempDir()
	pd := &pod{t: t, root: root, state: filepath.Join(root, "state"), plan: p, tasks: tasks}
	for i := range tasks {
		tk := &tasks[i].Task
		if tk.PipelineTask == "" {
			tk.PipelineTask = tk.Key
		}
		if tk.TaskRun == "" {
			tk.TaskRun = tk.Key + "-tr"
		}
		tk.Steps = nil
		for j := range tasks[i].steps {
			if tasks[i].steps[j].name == "" {
				tasks[i].steps[j].name = fmt.Sprintf("s%d", j)
			}
			tk.Steps = append(tk.Steps, "step-"+tk.Key+"-"+tasks[i].steps[j].name)
		}
		if tasks[i].sidecar != "" {
			tk.Sidecars = []string{"step-" + tk.Key + "-sidecar"}
		}
		p.Tasks = append(p.Tasks, *tk)
	}
	return pd
}

func (pd *pod) path(parts ...string) string {
	return filepath.Join(append([]string{pd.root}, parts...)...)
}

// own is a directory of one task's containers (its own volumes in the pod).
func (pd *pod) own(key string, parts ...string) string {
	return filepath.Join(append([]string{pd.root, "pods", key}, parts...)...)
}

func (pd *pod) write(path, content string, mode os.FileMode) {
	pd.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		pd.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		pd.t.Fatal(err)
	}
}

func (pd *pod) read(parts ...string) string {
	pd.t.Helper()
	b, err := os.ReadFile(pd.path(parts...))
	if err != nil {
		pd.t.Fatal(err)
	}
	return string(b)
}

// base are the flags every container of a task gets.
func (pd *pod) base(key string) []string {
	return []string{
		"-pip_plan", pd.path("plan.json"), "-pip_state", pd.state, "-pip_task", key,
	}
}

// stepArgs mirrors what the build side writes: our flags, then Tekton's entrypoint
// flags as Tekton's pod builder orders them, with this task's own directories.
func (pd *pod) stepArgs(tk *ttask, i int) []string {
	s := tk.steps[i]
	key := tk.Key
	run := func(j int, f string) string { return pd.own(key, "run", strconv.Itoa(j), f) }
	args := append(pd.base(key),
		"-pip_step", strconv.Itoa(i), "-pip_step_name", s.name,
		"-pip_results_dir", pd.own(key, "results"),
		"-pip_steps_dir", pd.own(key, "steps"),
		"-pip_scripts_dir", pd.path("scripts"),
		"-pip_cancel_file", pd.path("cancel"),
	)
	args = append(args, pd.extra...)
	if s.workdir != "" {
		args = append(args, "-pip_workdir", s.workdir)
	}
	if i > 0 {
		args = append(args, "-wait_file", run(i-1, "out"))
	}
	args = append(args,
		"-post_file", run(i, "out"),
		"-termination_path", pd.own(key, fmt.Sprintf("termination-%d", i)),
		"-step_metadata_dir", run(i, "status"),
	)
	if s.onError != "" {
		args = append(args, "-on_error", s.onError)
	}
	if s.timeout != 0 {
		args = append(args, "-timeout", s.timeout.String())
	}
	if s.when != "" {
		args = append(args, "--when_expressions", s.when)
	}
	var names []string
	for _, r := range tk.Results {
		names = append(names, r.Name)
	}
	if len(names) > 0 {
		args = append(args, "-results", strings.Join(names, ","))
	}
	if s.script != "" {
		script := pd.path("scripts", fmt.Sprintf("script-%s-%d", key, i))
		pd.write(script, "#!/bin/sh\nset -e\n"+s.script+"\n", 0o755)
		return append(args, "-entrypoint", script, "--")
	}
	return append(append(args, "-entrypoint", s.command[0], "--"), s.command[1:]...)
}

// env gives steps what Tekton's substitution would have put into their scripts.
func (pd *pod) env(key string) []string {
	return append(os.Environ(), "ROOT="+pd.root, "RESULTS="+pd.own(key, "results"), "STEPS="+pd.own(key, "steps"))
}

func (pd *pod) start(ctx context.Context, name string, args, env []string, wg *sync.WaitGroup, out map[string]*containerRun, mu *sync.Mutex) {
	pd.t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		pd.t.Fatalf("starting %s: %v", name, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		mu.Lock()
		out[name] = &containerRun{name: name, code: code, stdout: stdout.String(), stderr: stderr.String()}
		mu.Unlock()
	}()
}

// run starts the init container, then every container at once, as a pod would, and
// waits for all of them. It fails the test if the pod does not finish in time.
func (pd *pod) run() *podRun {
	pd.t.Helper()
	b, err := pd.plan.Encode()
	if err != nil {
		pd.t.Fatal(err)
	}
	pd.write(pd.path("plan.json"), b, 0o644)
	for _, tk := range pd.tasks {
		dirs := []string{"results", "steps"}
		for i := range tk.steps {
			dirs = append(dirs, filepath.Join("run", strconv.Itoa(i)))
		}
		for _, d := range dirs {
			if err := os.MkdirAll(pd.own(tk.Key, d), 0o755); err != nil {
				pd.t.Fatal(err)
			}
		}
	}
	if out, err := exec.CommandContext(pd.t.Context(), bin, "-pip_mode", "init", "-pip_plan", pd.path("plan.json"), "-pip_state", pd.state).CombinedOutput(); err != nil {
		pd.t.Fatalf("init: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	out := map[string]*containerRun{}
	for i := range pd.tasks {
		tk := &pd.tasks[i]
		for j := range tk.steps {
			pd.start(ctx, tk.Task.Steps[j], pd.stepArgs(tk, j), append(pd.env(tk.Key), tk.steps[j].env...), &wg, out, &mu)
		}
		if tk.sidecar != "" {
			args := append(pd.base(tk.Key), "-pip_mode", "sidecar", "-pip_sidecar_grace", "2s")
			env := pd.env(tk.Key)
			if tk.sidecarLookedUp {
				cmds, err := json.Marshal(map[string][]string{platforms.NewPlatform().Format(): {"/bin/sh", "-c", tk.sidecar}})
				if err != nil {
					pd.t.Fatal(err)
				}
				args = append(args, "--")
				env = append(env, "TEKTON_PLATFORM_COMMANDS="+string(cmds))
			} else {
				args = append(args, "-entrypoint", "/bin/sh", "--", "-c", tk.sidecar)
			}
			pd.start(ctx, tk.Sidecars[0], args, env, &wg, out, &mu)
		}
	}
	pd.start(ctx, plan.ReporterContainer, []string{"-pip_mode", "report", "-pip_plan", pd.path("plan.json"), "-pip_state", pd.state}, os.Environ(), &wg, out, &mu)
	wg.Wait()
	if ctx.Err() != nil {
		for _, c := range out {
			pd.t.Logf("%s (exit %d):\n%s%s", c.name, c.code, c.stdout, c.stderr)
		}
		pd.t.Fatal("the pod did not finish in time")
	}
	rep := out[plan.ReporterContainer]
	states, done, err := pd.plan.ReadReport(strings.NewReader(rep.stdout))
	if err != nil {
		pd.t.Fatal(err)
	}
	r := &podRun{states: states, done: done, reportRaw: rep.stdout, exit: map[string]int{}, logs: out}
	for n, c := range out {
		r.exit[n] = c.code
	}
	if pd.t.Failed() || testing.Verbose() {
		for _, c := range out {
			if c.stderr != "" {
				pd.t.Logf("%s stderr:\n%s", c.name, c.stderr)
			}
		}
	}
	return r
}

// phases summarises a run as key → "Phase/Reason" for comparisons.
func (r *podRun) phases() map[string]string {
	m := map[string]string{}
	for k, s := range r.states {
		m[k] = string(s.Phase) + "/" + s.Reason
	}
	return m
}

// nanos reads a `date +%s%N` stamp a step wrote.
func (pd *pod) nanos(name string) int64 {
	pd.t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(pd.read(name)), 10, 64)
	if err != nil {
		pd.t.Fatal(err)
	}
	return n
}

// stamped wraps a script between start and end time stamps named after the task.
func stamped(key, script string) string {
	return fmt.Sprintf("date +%%s%%N > $ROOT/%s.start\n%s\ndate +%%s%%N > $ROOT/%s.end", key, script, key)
}
