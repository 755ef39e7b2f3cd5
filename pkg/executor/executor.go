// Package executor is the in-pod side of PipelineInPod: the logic behind
// cmd/entrypoint, which wraps every container of the one Pod.
//
// Containers of all tasks start together; the entrypoints turn that into a Tekton
// PipelineRun's behaviour by coordinating through the shared state volume laid out in
// pkg/plan. Each task has a leader, the entrypoint of its first step: it waits for the
// task's DAG parents, decides whether the task runs (Tekton's skip rules), publishes
// the task's status, collects results and drives retries. The other steps of the task
// follow Tekton's own post-file protocol between steps, and stay alive between attempts
// because a container cannot be restarted.
//
// Results transport: a task's results never enter a termination message (a pod has
// 12 KiB of those in all). After the final attempt the leader copies them, typed, into
// its state directory (results/<name> and status.json); consumers in the pod read them
// from there, and the reporter container prints every status change as a JSON line
// (plan.ReportLine) that the controller folds with plan.ReadReport from the pod's log.
//
// Waits watch the state directories with inotify and fall back to polling every
// Config.Poll; besides the plan's status.json and steps/<i>.json, a task directory
// holds two files only entrypoints read: .attempt (the attempt that may run, with its
// exact start) and .ack/<step> (a step's cleanup before a retry).
package executor

import (
	"io"
	"log"
	"os"
	"time"
)

// Modes of the binary (-pip_mode).
const (
	ModeStep    = "step"
	ModeSidecar = "sidecar"
	ModeReport  = "report"
	ModeInit    = "init"
)

// Config is one container's invocation: PipelineInPod's own flags, then Tekton's
// entrypoint flags exactly as Tekton's pod builder writes them.
type Config struct {
	Mode     string
	PlanFile string
	StateDir string
	Task     string
	Step     int
	// StepName is Tekton's name of the step (without "step-"); it names the
	// /tekton/steps/step-<name> link and StepState.Name.
	StepName string
	// WorkDir is the step's workingDir still holding run-time references; empty when
	// the container's own workingDir applies.
	WorkDir    string
	ResultsDir string
	StepsDir   string
	ScriptsDir string
	CancelFile string
	// Bin is where init copies this binary.
	Bin string
	// Poll is the interval of the waits that sit on the hand-off path.
	Poll time.Duration
	// ReportPoll is the reporter's interval.
	ReportPoll time.Duration
	// ReportSnapshot is how long after a line the reporter re-prints the terminal states
	// at the latest (see runReport); zero means reportSnapshotPeriod.
	ReportSnapshot time.Duration
	// SidecarGrace is how long a sidecar may take to exit after SIGTERM.
	SidecarGrace time.Duration
	// Creds is set when Tekton's credential flags were given.
	Creds bool

	Entrypoint                 string
	WaitFiles                  []string
	WaitFileContent            bool
	PostFile                   string
	TerminationPath            string
	StepMetadataDir            string
	OnError                    string
	Timeout                    time.Duration
	StdoutPath                 string
	StderrPath                 string
	StepResults                []string
	WhenExpressions            string
	CompressTerminationMessage bool
	// Args are the step's arguments (after "--").
	Args []string

	// Stdout receives the reporter's lines; nil means os.Stdout.
	Stdout io.Writer
}

// Run executes one container's part and returns the container's exit code.
func Run(cfg Config) int {
	log.SetFlags(0)
	log.SetPrefix("pipelineinpod: ")
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Millisecond
	}
	if cfg.ReportPoll <= 0 {
		cfg.ReportPoll = 20 * time.Millisecond
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	var err error
	code := 0
	switch cfg.Mode {
	case ModeInit:
		err = runInit(cfg)
	case ModeReport:
		err = runReport(cfg)
	case ModeSidecar:
		err = runSidecar(cfg)
	case ModeStep, "":
		code, err = runStep(cfg)
		if err != nil && cfg.Step == 0 {
			failTask(cfg, err)
		}
	default:
		log.Printf("unknown -pip_mode %q", cfg.Mode)
		return 1
	}
	if err != nil {
		log.Print(err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
