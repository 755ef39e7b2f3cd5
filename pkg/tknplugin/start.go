package tknplugin

import (
	"context"
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/render"
)

// StartOptions say what Start runs and where.
type StartOptions struct {
	// File holds PipelineRuns (and CustomRuns of PipelineInPod), as written for Tekton.
	File string
	// Follow the runs' logs until they end.
	Follow bool
	// Namespace is where runs without one of their own go; NamespaceSet: it was asked
	// for (-n), so a run in another namespace is an error, as with kubectl.
	Namespace    string
	NamespaceSet bool
}

// Start runs each PipelineRun of a file, unchanged, in one pod: it creates the CustomRun
// that `pipelineinpod render` shows for it (v1alpha1.FromPipelineRun) and, with Follow,
// prints its logs until it ends. The file's other documents (Pipelines, Tasks...) are not
// created: they must be in the cluster already, as for the PipelineRun itself.
func Start(ctx context.Context, env Env, c *Clients, o StartOptions) error {
	docs, err := render.ReadFiles(o.File)
	if err != nil {
		return err
	}
	var runs []*v1beta1.CustomRun
	for _, d := range docs {
		var cr *v1beta1.CustomRun
		switch obj := d.Object.(type) {
		case *v1.PipelineRun:
			if cr, err = v1alpha1.FromPipelineRun(obj); err != nil {
				return fmt.Errorf("%s: PipelineRun %s: %w", d.Source, obj.Name, err)
			}
		case *v1beta1.CustomRun:
			if !v1alpha1.IsPipelineInPod(obj) {
				return fmt.Errorf("%s: CustomRun %s is not a %s run", d.Source, obj.Name+obj.GenerateName, v1alpha1.Kind)
			}
			cr = obj.DeepCopy()
		default:
			m, _ := obj.(metav1.Object)
			fmt.Fprintf(env.Stderr, "%s: %s %s not created: start runs the PipelineRuns of a file (kubectl apply the rest)\n",
				d.Source, obj.GetObjectKind().GroupVersionKind().Kind, m.GetName())
			continue
		}
		switch {
		case cr.Namespace == "":
			cr.Namespace = o.Namespace
		case o.NamespaceSet && cr.Namespace != o.Namespace:
			return fmt.Errorf("%s: the run's namespace %s is not the namespace asked for (%s)", d.Source, cr.Namespace, o.Namespace)
		}
		runs = append(runs, cr)
	}
	if len(runs) == 0 {
		return fmt.Errorf("%s: no PipelineRun to start", o.File)
	}
	var created []*v1beta1.CustomRun
	for _, cr := range runs {
		got, err := c.Tekton.TektonV1beta1().CustomRuns(cr.Namespace).Create(ctx, cr, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating the CustomRun for %s: %w", cr.Name+cr.GenerateName, err)
		}
		fmt.Fprintf(env.Stdout, "CustomRun started: %s\n", got.Name)
		if !o.Follow {
			fmt.Fprintf(env.Stdout, "\nIn order to track the run's progress run:\ntkn pipelineinpod logs %s -f -n %s\n", got.Name, got.Namespace)
		}
		created = append(created, got)
	}
	if !o.Follow {
		return nil
	}
	failed := 0
	for _, cr := range created {
		fmt.Fprintln(env.Stdout)
		last, err := Logs(ctx, env, c, cr.Namespace, cr.Name, LogOptions{Follow: true})
		if err != nil {
			return err
		}
		if cond := last.Status.GetCondition(apis.ConditionSucceeded); cond == nil || !cond.IsTrue() {
			failed++
		}
	}
	if failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}
