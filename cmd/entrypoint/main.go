// Command entrypoint wraps every container of a PipelineInPod pod. It accepts Tekton's
// entrypoint flags unchanged (the pod is built by Tekton's own pod builder) plus the
// -pip_* flags the build side prepends; the logic lives in pkg/executor.
package main

import (
	"errors"
	"flag"
	"log"
	"os"
	"strings"
	"time"

	"github.com/tektoncd/pipeline/cmd/entrypoint/subcommands"
	"github.com/tektoncd/pipeline/pkg/credentials/dockercreds"
	"github.com/tektoncd/pipeline/pkg/credentials/gitcreds"
	"github.com/tektoncd/pipeline/pkg/entrypoint"
	"github.com/tektoncd/pipeline/pkg/entrypoint/pipeline"

	"github.com/pipelineinpod/pipelineinpod/pkg/executor"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	var cfg executor.Config
	var waitFiles, stepResults string
	fs := flag.NewFlagSet("entrypoint", flag.ContinueOnError)

	fs.StringVar(&cfg.Mode, "pip_mode", executor.ModeStep, "step, sidecar, report or init")
	fs.StringVar(&cfg.PlanFile, "pip_plan", plan.PlanFile, "the plan")
	fs.StringVar(&cfg.StateDir, "pip_state", plan.StateDir, "the shared state directory")
	fs.StringVar(&cfg.Task, "pip_task", "", "the task key of this container")
	fs.IntVar(&cfg.Step, "pip_step", 0, "the step index of this container in its task")
	fs.StringVar(&cfg.StepName, "pip_step_name", "", "Tekton's step name (default: the plan's container name without \"step-\")")
	fs.StringVar(&cfg.WorkDir, "pip_workdir", "", "workingDir holding run-time references, substituted then entered")
	fs.StringVar(&cfg.ResultsDir, "pip_results_dir", pipeline.DefaultResultPath, "the task's results directory")
	fs.StringVar(&cfg.StepsDir, "pip_steps_dir", pipeline.StepsDir, "the task's steps directory")
	fs.StringVar(&cfg.ScriptsDir, "pip_scripts_dir", pipeline.ScriptDir, "where Tekton places scripts")
	fs.StringVar(&cfg.CancelFile, "pip_cancel_file", entrypoint.DownwardMountCancelFile, "file whose content cancels the run")
	fs.StringVar(&cfg.Bin, "pip_bin", "", "init: where to copy this binary")
	fs.DurationVar(&cfg.Poll, "pip_poll", 5*time.Millisecond, "interval of the hand-off waits")
	fs.DurationVar(&cfg.ReportPoll, "pip_report_poll", 20*time.Millisecond, "interval of the reporter")
	fs.DurationVar(&cfg.SidecarGrace, "pip_sidecar_grace", 5*time.Second, "time a sidecar gets between SIGTERM and SIGKILL")

	// Tekton's entrypoint flags (cmd/entrypoint/main.go), same names and defaults.
	fs.StringVar(&cfg.Entrypoint, "entrypoint", "", "original specified entrypoint to execute")
	fs.StringVar(&waitFiles, "wait_file", "", "comma-separated list of paths to wait for")
	fs.BoolVar(&cfg.WaitFileContent, "wait_file_content", false, "expect wait_file to have content")
	fs.StringVar(&cfg.PostFile, "post_file", "", "file to write upon completion")
	fs.StringVar(&cfg.TerminationPath, "termination_path", "/tekton/termination", "file to write upon termination")
	fs.String("results", "", "task result names; accepted and ignored: results travel through the state volume")
	fs.StringVar(&stepResults, "step_results", "", "step result names")
	fs.StringVar(&cfg.WhenExpressions, "when_expressions", "", "step when expressions (JSON)")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "step timeout")
	fs.StringVar(&cfg.StdoutPath, "stdout_path", "", "file to copy stdout to")
	fs.StringVar(&cfg.StderrPath, "stderr_path", "", "file to copy stderr to")
	// Tekton's debug breakpoints wait for a user in the step's container; in a shared
	// pod that would stall every task after it, so they are accepted and ignored.
	fs.Bool("breakpoint_on_failure", false, "accepted and ignored")
	fs.Bool("debug_before_step", false, "accepted and ignored")
	fs.StringVar(&cfg.OnError, "on_error", "", "continue or stopAndFail")
	fs.StringVar(&cfg.StepMetadataDir, "step_metadata_dir", "", "the step's metadata directory")
	fs.String("result_from", "", "accepted and ignored: results travel through the state volume")
	fs.BoolVar(&cfg.CompressTerminationMessage, "compress_termination_message", false, "compress termination messages")
	fs.Bool("enable_spire", false, "accepted and ignored: SPIRE signing is not supported in a shared pod")
	fs.String("spire_socket_path", "", "accepted and ignored")
	gitcreds.AddFlags(fs)
	dockercreds.AddFlags(fs)

	flags, args := splitArgs(argv)
	if err := fs.Parse(flags); err != nil {
		return 1
	}
	// Tekton's place-scripts init container runs "/tekton/bin/entrypoint decode-script".
	if err := subcommands.Process(fs.Args()); err != nil {
		var ok subcommands.OK
		if errors.As(err, &ok) {
			return 0
		}
		log.Print(err)
		return 1
	}
	cfg.Args = args
	if waitFiles != "" {
		cfg.WaitFiles = strings.Split(waitFiles, ",")
	}
	if stepResults != "" {
		cfg.StepResults = strings.Split(stepResults, ",")
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "basic-docker", "docker-config", "docker-cfg", "basic-git", "ssh-git":
			cfg.Creds = true
		}
	})
	return executor.Run(cfg)
}

// splitArgs separates the entrypoint's flags from the step's command line at "--".
func splitArgs(argv []string) (flags, args []string) {
	for i, a := range argv {
		if a == "--" {
			return argv[:i], argv[i+1:]
		}
	}
	return argv, nil
}
