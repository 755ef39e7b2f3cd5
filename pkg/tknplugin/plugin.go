// Package tknplugin is the tkn plugin of PipelineInPod (cmd/tkn-pipelineinpod, run as
// `tkn pipelineinpod`): it shows a run as a Tekton user expects to see a PipelineRun.
//
//	logs <customrun> [task...] [-f] [--all]   each task's steps, in DAG order, "[task : step] line"
//	describe <customrun>                      the run, its child TaskRuns, skipped tasks, the pod
//	start -f pipelinerun.yaml [--follow]      a PipelineRun file run in one pod
//
// tkn's own `taskrun logs` lists a pod's containers from its spec, so on a child TaskRun it
// prints every task of the shared pod and the reporter's JSON; here each task's containers
// come from the pod's plan (plan.AnnotationPlan), and a task's attempts and steps from
// the reporter's log, the record the controller itself reads.
package tknplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Env is what the commands run against: their output, the cluster, and time.
type Env struct {
	Stdout, Stderr io.Writer
	// Connect returns the clients of a kubeconfig (empty: the default loading rules) and
	// context (empty: its current one), and that context's namespace.
	Connect func(kubeconfig, context string) (*Clients, string, error)
	// Sleep waits between two looks at a live run; Poll is how long.
	Sleep func(ctx context.Context, d time.Duration) error
	Poll  time.Duration
}

// DefaultPoll is how often a followed run is looked at again.
const DefaultPoll = time.Second

const usage = `Usage: tkn pipelineinpod COMMAND (or tkn-pipelineinpod COMMAND)

Commands:
  logs CUSTOMRUN [TASK...] [-f] [--all]   each task's steps in DAG order, every attempt,
                                          prefixed [task : step]; -f follows a live run
  describe CUSTOMRUN                      the run, every child TaskRun, skipped tasks, the pod
  start -f PIPELINERUN.yaml [--follow]    run the PipelineRuns of a file in one pod each

Flags of every command:
  -n, --namespace NAME   the namespace (default: the kubeconfig context's)
  -k, --kubeconfig PATH  the kubeconfig (default: $KUBECONFIG, ~/.kube/config)
  -c, --context NAME     the kubeconfig context
`

// errUsage is a command line that cannot be run; Main prints the usage with it.
var errUsage = errors.New("usage")

// Main runs one command line (without the program name) and returns the exit code.
func Main(ctx context.Context, env Env, args []string) int {
	if env.Poll <= 0 {
		env.Poll = DefaultPoll
	}
	if env.Sleep == nil {
		env.Sleep = sleep
	}
	err := run(ctx, env, args)
	var fail *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "%v\n\n%s", err, usage)
		return 2
	case errors.As(err, &fail):
		if fail.msg != "" {
			fmt.Fprintln(env.Stderr, fail.msg)
		}
		return fail.code
	}
	fmt.Fprintln(env.Stderr, "Error:", err)
	return 1
}

// exitError ends a command with a code of its own (a followed run that failed).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// common are the flags every command takes.
type common struct {
	namespace, kubeconfig, context string
}

func (c *common) bind(fs *pflag.FlagSet) {
	fs.StringVarP(&c.namespace, "namespace", "n", "", "the namespace (default: the kubeconfig context's)")
	fs.StringVarP(&c.kubeconfig, "kubeconfig", "k", "", "the kubeconfig file")
	fs.StringVarP(&c.context, "context", "c", "", "the kubeconfig context")
}

// connect returns the clients and the namespace to work in.
func (c *common) connect(env Env) (*Clients, string, error) {
	clients, ns, err := env.Connect(c.kubeconfig, c.context)
	if err != nil {
		return nil, "", err
	}
	if c.namespace != "" {
		ns = c.namespace
	}
	if ns == "" {
		ns = "default"
	}
	return clients, ns, nil
}

func run(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	cmd, args := args[0], args[1:]
	fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c common
	c.bind(fs)
	switch cmd {
	case "logs":
		var o LogOptions
		fs.BoolVarP(&o.Follow, "follow", "f", false, "follow a live run until it ends")
		fs.BoolVarP(&o.All, "all", "a", false, "also the pod's init containers and each task's sidecars")
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() < 1 {
			return fmt.Errorf("%w: logs needs the name of a CustomRun", errUsage)
		}
		o.Tasks = fs.Args()[1:]
		clients, ns, err := c.connect(env)
		if err != nil {
			return err
		}
		_, err = Logs(ctx, env, clients, ns, fs.Arg(0), o)
		return err
	case "describe", "desc":
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: describe needs the name of one CustomRun", errUsage)
		}
		clients, ns, err := c.connect(env)
		if err != nil {
			return err
		}
		return Describe(ctx, env.Stdout, clients, ns, fs.Arg(0))
	case "start":
		var o StartOptions
		fs.StringVarP(&o.File, "filename", "f", "", "a YAML file of PipelineRuns")
		fs.BoolVar(&o.Follow, "follow", false, "follow the runs' logs until they end")
		if err := parse(fs, args); err != nil {
			return err
		}
		if o.File == "" || fs.NArg() != 0 {
			return fmt.Errorf("%w: start needs -f FILE and nothing else", errUsage)
		}
		clients, ns, err := c.connect(env)
		if err != nil {
			return err
		}
		o.Namespace, o.NamespaceSet = ns, c.namespace != ""
		return Start(ctx, env, clients, o)
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s: %s", errUsage, fs.Name(), strings.TrimSpace(err.Error()))
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
