// Command controller is the PipelineInPod controller: it reconciles Tekton CustomRuns of
// kind PipelineInPod (apiVersion tekton.dev/v1alpha1), running each one's Pipeline in
// one pod.
//
// In a cluster it runs from config/500-controller.yaml. Out of cluster (local development,
// e2e), give it a kubeconfig and the namespace of its ConfigMaps:
//
//	SYSTEM_NAMESPACE=pipelineinpod go run ./cmd/controller -kubeconfig ~/.kube/config -disable-ha \
//	  -pip-entrypoint-image <cmd/entrypoint image> -workingdirinit-image <Tekton's> -shell-image <busybox>
//
// It reads Tekton's configuration (feature-flags, config-defaults, ...) from Tekton's
// namespace, -tekton-namespace (default tekton-pipelines), and follows its changes.
//
// Every image flag can also come from the environment variable named in its help.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	tektonfiltered "github.com/tektoncd/pipeline/pkg/client/injection/informers/factory/filtered"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	kubefiltered "knative.dev/pkg/client/injection/kube/informers/factory/filtered"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"
	"knative.dev/pkg/injection/sharedmain"
	"knative.dev/pkg/signals"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/reconciler"
)

// stringFlag is a flag whose default comes from an environment variable, so the
// Deployment can set images through env (ko resolves ko:// in either place).
func stringFlag(p *string, name, env, usage string) {
	flag.StringVar(p, name, os.Getenv(env), fmt.Sprintf("%s (env %s)", usage, env))
}

func main() {
	opts := reconciler.Options{Bounds: observe.DefaultBounds, RequeueInterval: reconciler.DefaultRequeueInterval}
	stringFlag(&opts.EntrypointImage, "pip-entrypoint-image", "PIP_ENTRYPOINT_IMAGE", "this project's entrypoint image (cmd/entrypoint), run in every pod")
	stringFlag(&opts.Images.EntrypointImage, "entrypoint-image", "TEKTON_ENTRYPOINT_IMAGE", "Tekton's entrypoint image (unused: the assembler puts ours in its place)")
	stringFlag(&opts.Images.NopImage, "nop-image", "TEKTON_NOP_IMAGE", "Tekton's nop image (unused: nothing is stopped with it)")
	stringFlag(&opts.Images.SidecarLogResultsImage, "sidecarlogresults-image", "TEKTON_SIDECARLOGRESULTS_IMAGE", "Tekton's sidecarlogresults image")
	stringFlag(&opts.Images.WorkingDirInitImage, "workingdirinit-image", "TEKTON_WORKINGDIRINIT_IMAGE", "Tekton's working dir initializer image")
	stringFlag(&opts.Images.ShellImage, "shell-image", "TEKTON_SHELL_IMAGE", "an image with a POSIX shell, for Tekton's place-scripts init container")
	stringFlag(&opts.Images.ShellImageWin, "shell-image-win", "TEKTON_SHELL_IMAGE_WIN", "an image with PowerShell, for Windows scripts")
	flag.DurationVar(&opts.Bounds.Unschedulable, "unschedulable-timeout", opts.Bounds.Unschedulable, "how long a run's pod may stay unschedulable before the run fails")
	flag.DurationVar(&opts.Bounds.ImagePullBackOff, "image-pull-backoff-timeout", opts.Bounds.ImagePullBackOff, "how long a container may stay in ImagePullBackOff before the run fails (0: at once, as Tekton's default)")
	flag.DurationVar(&opts.Bounds.StepExit, "step-exit-grace", opts.Bounds.StepExit, "how long a step container may be gone before its step's outcome is reported, before the task fails")
	flag.DurationVar(&opts.RequeueInterval, "requeue-interval", opts.RequeueInterval, "how often a running CustomRun is looked at again besides following its reporter's log (the fallback when the log cannot be followed)")
	namespace := flag.String("namespace", corev1.NamespaceAll, "only reconcile CustomRuns of this namespace (default: all)")
	// Tekton's configuration lives in Tekton's namespace, not in ours (SYSTEM_NAMESPACE,
	// knative's convention, is the controller's own).
	opts.TektonNamespace = os.Getenv("TEKTON_SYSTEM_NAMESPACE")
	if opts.TektonNamespace == "" {
		opts.TektonNamespace = reconciler.DefaultTektonNamespace
	}
	flag.StringVar(&opts.TektonNamespace, "tekton-namespace", opts.TektonNamespace, "the namespace of Tekton Pipelines, whose ConfigMaps (feature-flags, config-defaults, ...) the runs are validated and defaulted with (env TEKTON_SYSTEM_NAMESPACE)")
	disableHA := flag.Bool("disable-ha", false, "run without leader election (one replica, or out of cluster)")
	flag.IntVar(&controller.DefaultThreadsPerController, "threads-per-controller", controller.DefaultThreadsPerController, "reconciles run at once")

	// Parses the flags, -kubeconfig, -server, -kube-api-qps and -kube-api-burst included.
	cfg := injection.ParseAndGetRESTConfigOrDie()
	sizeClientRate(cfg)
	injection.Default = withoutInformers{Interface: injection.Default, drop: unusedInformers}
	if err := validateImages(opts.EntrypointImage, opts.Images); err != nil {
		log.Fatal(err)
	}

	ctx := injection.WithNamespaceScope(signals.NewContext(), *namespace)
	if *disableHA {
		ctx = sharedmain.WithHADisabled(ctx)
	}
	// Both filtered informer factories (knative's for pods, Tekton's for TaskRuns) need
	// the selector before they start.
	ctx = kubefiltered.WithSelectors(ctx, reconciler.ManagedBySelector)
	ctx = tektonfiltered.WithSelectors(ctx, reconciler.ManagedBySelector)
	sharedmain.MainWithConfig(ctx, reconciler.ControllerName, cfg, reconciler.NewController(opts))
}

// tektonControllers is the number of controllers Tekton's controller runs on one client
// (its PipelineRun and TaskRun reconcilers), by which it multiplies its client's rate.
// This controller does both jobs for the runs it reconciles (it creates their child
// TaskRuns and writes their statuses), so its client is sized the same way.
const tektonControllers = 2

// sizeClientRate sizes the client's rate limit as Tekton's controller sizes its own
// (tektoncd/pipeline cmd/controller/main.go): -kube-api-qps and -kube-api-burst
// (knative's flags, or KUBE_API_QPS and KUBE_API_BURST) when given, else twice
// client-go's default QPS and its default burst; then both times the number of
// controllers. Unset, that is 20 QPS with a burst of 20 (sharedmain alone would give
// one controller 5 and 10).
func sizeClientRate(cfg *rest.Config) {
	if cfg.QPS == 0 {
		cfg.QPS = 2 * rest.DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = rest.DefaultBurst
	}
	cfg.QPS *= tektonControllers
	cfg.Burst *= tektonControllers
}

// validateImages fails fast on images the pods need: a pod with an empty image would only
// fail later, one run at a time. The pods use our entrypoint in place of Tekton's, and
// Tekton's shell (place-scripts) and working-dir initializer images; Tekton's nop image
// (stopping sidecars), sidecar-logs results image and Windows shell are not used by
// them and may stay unset.
func validateImages(entrypoint string, i pipeline.Images) error {
	var unset []string
	for _, f := range []struct{ v, name string }{
		{entrypoint, "pip-entrypoint-image"},
		{i.WorkingDirInitImage, "workingdirinit-image"},
		{i.ShellImage, "shell-image"},
	} {
		if f.v == "" {
			unset = append(unset, "-"+f.name)
		}
	}
	if len(unset) > 0 {
		return fmt.Errorf("unset image flags: %s", strings.Join(unset, ", "))
	}
	return nil
}
