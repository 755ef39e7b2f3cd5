// Command pipelineinpod shows what PipelineInPod would create for a run:
//
//	pipelineinpod render -f FILE [-f FILE ...]
//
// reads Pipelines, Tasks, StepActions, PipelineRuns and CustomRuns (plus the
// ConfigMaps, Secrets and ServiceAccounts they use), resolves references among them,
// and prints, for every PipelineRun or CustomRun, the one Pod and the child TaskRuns
// (and PVCs) the controller would create. A PipelineRun is read as "run this one in a
// pod". On stderr it prints, per run, what the pod requests: its peak concurrent demand,
// the tasks that make it, our overhead and the mechanism (pod-level resources unless
// -pod-level-resources=false). LimitRanges among the files bound the requests as in
// their namespace. It validates and defaults as Tekton does with its default
// configuration, or with the cluster's given with -tekton-config (Tekton's ConfigMaps,
// e.g. `kubectl get configmap -n tekton-pipelines feature-flags -o yaml`; repeatable).
// On an error it prints one line naming the document, the field and the reason, and
// exits 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/config"

	"github.com/pipelineinpod/pipelineinpod/pkg/render"
)

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	if len(os.Args) < 2 || os.Args[1] != "render" {
		fmt.Fprintln(os.Stderr, "usage: pipelineinpod render -f FILE [-f FILE ...] [-tekton-config FILE ...] [-entrypoint-image IMAGE] [-shell-image IMAGE] [-pod-level-resources=false] [-lookup-entrypoints]")
		os.Exit(2)
	}
	opts := render.DefaultOptions()
	fs := flag.NewFlagSet("render", flag.ExitOnError)
	var fl, tektonConfig files
	fs.Var(&fl, "f", "a YAML file (repeatable)")
	fs.Var(&tektonConfig, "tekton-config", "a YAML file of Tekton's ConfigMaps (feature-flags, config-defaults, ...) to validate and default with, as the cluster's Tekton does (repeatable; default: Tekton's defaults)")
	fs.StringVar(&opts.EntrypointImage, "entrypoint-image", opts.EntrypointImage, "this project's entrypoint image")
	fs.StringVar(&opts.Images.ShellImage, "shell-image", opts.Images.ShellImage, "Tekton's shell image, for scripts")
	fs.StringVar(&opts.Images.WorkingDirInitImage, "workingdirinit-image", opts.Images.WorkingDirInitImage, "Tekton's working-dir initializer image")
	fs.BoolVar(&opts.PodLevelResources, "pod-level-resources", opts.PodLevelResources, "put the pod's peak demand in spec.resources (Kubernetes >= 1.34); false: on the reporter container")
	fs.BoolVar(&opts.LookUpEntrypoints, "lookup-entrypoints", opts.LookUpEntrypoints, "ask the images' registries for the command of steps and sidecars without one, as the controller does")
	_ = fs.Parse(os.Args[2:])
	if len(fl) == 0 {
		fmt.Fprintln(os.Stderr, "render: at least one -f FILE is required")
		os.Exit(2)
	}
	// The stages recover their own panics and name the document; this is the last
	// guard, so that no stack trace ever reaches a user.
	defer func() {
		if r := recover(); r != nil {
			fail(fmt.Errorf("%s: internal error (please report it): %v", fl.String(), r))
		}
	}()
	ctx := context.Background()
	if len(tektonConfig) > 0 {
		cfg, err := render.ReadTektonConfig(tektonConfig...)
		if err != nil {
			fail(err)
		}
		ctx = config.ToContext(ctx, cfg)
	}
	docs, err := render.ReadFiles(fl...)
	if err != nil {
		fail(err)
	}
	results, err := render.Render(ctx, opts, docs)
	if err != nil {
		fail(err)
	}
	if len(results) == 0 {
		fail(fmt.Errorf("%s: no PipelineRun or CustomRun to render", fl.String()))
	}
	failed := false
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintln(os.Stderr, render.OneLine(r.Err))
			failed = true
			continue
		}
		if err := render.WriteYAML(os.Stdout, r.Output); err != nil {
			fail(err)
		}
		// What the pod reserves and why, for people; stdout stays the YAML.
		fmt.Fprintf(os.Stderr, "%s %s: %s\n", r.Run.Kind, r.Run.Name, r.Output.Resources)
	}
	if failed {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, render.OneLine(err))
	os.Exit(1)
}
