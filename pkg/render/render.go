// Package render runs the controller's preparation (pkg/prepare: resolve → compile →
// assemble) offline, over YAML files instead of an API server: what `pipelineinpod
// render` prints, and what the golden and conformance tests check. Resolution still goes
// through Tekton's own functions, backed by fake clientsets holding the files' objects.
package render

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tektonv1alpha1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	"github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

// DefaultNamespace is where documents without a namespace live.
const DefaultNamespace = "default"

// Document is one object of a YAML file.
type Document struct {
	Source string // file and index, for error messages
	Object runtime.Object
	// alpha is a tekton.dev/v1alpha1 StepAction as written: Object holds it as the API
	// server serves it (v1beta1), and admission validates it as written (see admit).
	alpha *tektonv1alpha1.StepAction
}

// Run is a run found in the documents, as the CustomRun that runs it in one pod.
type Run struct {
	Source    string
	Kind      string // PipelineRun or CustomRun, as written
	Name      string
	CustomRun *v1beta1.CustomRun
}

// Result is the outcome of rendering one Run.
type Result struct {
	Run    Run
	Output *assemble.Output
	Err    error
}

// ReadFiles parses every YAML document of the files.
func ReadFiles(paths ...string) ([]Document, error) {
	var docs []Document
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		d, err := Parse(p, b)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	return docs, nil
}

// Parse reads the YAML documents of one file.
func Parse(name string, data []byte) (_ []Document, err error) {
	defer recovered(name+": ", &err)
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []Document
	for i := 0; ; i++ {
		chunk, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(bytes.TrimSpace(chunk)) == 0 {
			continue
		}
		source := fmt.Sprintf("%s#%d", name, i)
		// YAML is parsed once: a document as large as the API server takes (1.5 MiB)
		// costs a second of CPU per parse, JSON a tenth of that.
		js, err := yaml.YAMLToJSONStrict(chunk)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if tm.Kind == "" {
			continue
		}
		obj, err := newObject(tm)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", source, tm.Kind, err)
		}
		d := Document{Source: source, Object: obj}
		switch o := obj.(type) {
		case *v1beta1.StepAction:
			// As Tekton's defaulting webhook does when it is applied (admit validates it).
			o.SetDefaults(context.Background())
		case *tektonv1alpha1.StepAction:
			// The API server stores a v1alpha1 StepAction as v1beta1 (Tekton's conversion
			// webhook) once Tekton's defaulting webhook has defaulted it, and resolution
			// reads v1beta1: the same steps here, with Tekton's own functions.
			o.SetDefaults(context.Background())
			sa := &v1beta1.StepAction{TypeMeta: metav1.TypeMeta{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "StepAction"}}
			if err := o.ConvertTo(context.Background(), sa); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", source, tm.Kind, err)
			}
			d.Object, d.alpha = sa, o
		}
		docs = append(docs, d)
	}
}

func newObject(tm metav1.TypeMeta) (runtime.Object, error) {
	switch tm.APIVersion + "/" + tm.Kind {
	case "tekton.dev/v1/Pipeline":
		return &v1.Pipeline{}, nil
	case "tekton.dev/v1/Task":
		return &v1.Task{}, nil
	case "tekton.dev/v1/PipelineRun":
		return &v1.PipelineRun{}, nil
	case "tekton.dev/v1beta1/StepAction":
		return &v1beta1.StepAction{}, nil
	case "tekton.dev/v1alpha1/StepAction":
		return &tektonv1alpha1.StepAction{}, nil
	case "tekton.dev/v1beta1/CustomRun":
		return &v1beta1.CustomRun{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, nil
	case "v1/LimitRange":
		return &corev1.LimitRange{}, nil
	}

	return nil, fmt.Errorf("apiVersion %q kind %q: not a kind render reads (tekton.dev/v1 Pipeline, Task, PipelineRun; tekton.dev/v1beta1 StepAction, CustomRun; tekton.dev/v1alpha1 StepAction; v1 ConfigMap, Secret, ServiceAccount, PersistentVolumeClaim, LimitRange)", tm.APIVersion, tm.Kind)
}

// Runs lists the PipelineRuns and CustomRuns of the documents as CustomRuns. A run
// with only a generateName gets the name Kubernetes would complete, with a fixed
// suffix so that output is reproducible.
func Runs(docs []Document) (_ []Run, err error) {
	defer recovered("", &err)
	var runs []Run
	for _, d := range docs {
		switch o := d.Object.(type) {
		case *v1.PipelineRun:
			pr := o.DeepCopy()
			complete(&pr.ObjectMeta)
			cr, err := v1alpha1.FromPipelineRun(pr)
			if err != nil {
				return nil, fmt.Errorf("%s: PipelineRun %s: %w", d.Source, pr.Name, err)
			}
			cr.UID = pr.UID
			runs = append(runs, Run{Source: d.Source, Kind: "PipelineRun", Name: pr.Name, CustomRun: cr})
		case *v1beta1.CustomRun:
			cr := o.DeepCopy()
			complete(&cr.ObjectMeta)
			runs = append(runs, Run{Source: d.Source, Kind: "CustomRun", Name: cr.Name, CustomRun: cr})
		}
	}
	return runs, nil
}

func complete(m *metav1.ObjectMeta) {
	if m.Name == "" {
		m.Name = m.GenerateName + "render"
	}
	if m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
	if m.UID == "" {
		m.UID = "00000000-0000-0000-0000-000000000000"
	}
}

// Options are the images a rendered pod names, and how it carries its requests.
type Options struct {
	Images          pipeline.Images
	EntrypointImage string
	// PodLevelResources renders for a cluster with pod-level resources (Kubernetes >=
	// 1.34), as the controller does when the API server has them.
	PodLevelResources bool
	// LookUpEntrypoints asks the images' registries for the command of steps and
	// sidecars that have none, as the controller does, with the pull secrets of the
	// documents' service accounts and pod templates. Off, such steps and sidecars fail.
	LookUpEntrypoints bool
}

// DefaultOptions names the images `ko apply -f config/` would deploy.
func DefaultOptions() Options {
	return Options{
		EntrypointImage: "ko://github.com/pipelineinpod/pipelineinpod/cmd/entrypoint",
		Images: pipeline.Images{
			ShellImage:          "cgr.dev/chainguard/busybox@sha256:19f02276bf8dbdd62f069b922f10c65262cc34b710eea26ff928129a736be791",
			WorkingDirInitImage: "ghcr.io/tektoncd/pipeline/workingdirinit-0c558922ec6a1b739e550e349f2d5fc1:v1.15.1",
			NopImage:            "ghcr.io/tektoncd/pipeline/nop-8eac7c133edad5df719dc37b36b62482:v1.15.1",
		},
		PodLevelResources: true,
	}
}

// ReadTektonConfig reads Tekton's configuration from files holding ConfigMaps of
// Tekton's namespace (feature-flags, config-defaults, ...), as `kubectl get configmap -n
// tekton-pipelines feature-flags -o yaml` prints them: render then validates and
// defaults as that cluster's Tekton would. What they leave out is Tekton's default.
func ReadTektonConfig(paths ...string) (*config.Config, error) {
	docs, err := ReadFiles(paths...)
	if err != nil {
		return nil, err
	}
	var cms []*corev1.ConfigMap
	for _, d := range docs {
		cm, ok := d.Object.(*corev1.ConfigMap)
		if !ok {
			return nil, fmt.Errorf("%s: %T: Tekton's configuration is ConfigMaps (feature-flags, config-defaults, ...)", d.Source, d.Object)
		}
		if _, err := v1alpha1.TektonConfig(cm); err != nil {
			return nil, fmt.Errorf("%s: %w", d.Source, err)
		}
		cms = append(cms, cm)
	}
	return v1alpha1.TektonConfig(cms...)
}

// Render prepares every run of the documents, as the first attempt of each. Tekton's
// configuration is the one ctx carries (config.ToContext), else Tekton's defaults.
func Render(ctx context.Context, opts Options, docs []Document) ([]Result, error) {
	runs, err := Runs(docs)
	if err != nil {
		return nil, err
	}
	var tekton, kube []runtime.Object
	sas := map[string]bool{}
	for _, d := range docs {
		if err := admit(ctx, d); err != nil {
			return nil, err
		}
		o := d.Object.DeepCopyObject()
		meta, _ := o.(metav1.Object)
		if meta.GetNamespace() == "" {
			meta.SetNamespace(DefaultNamespace)
		}
		switch o.(type) {
		case *v1.Pipeline, *v1.Task, *v1beta1.StepAction:
			tekton = append(tekton, o)
		case *corev1.ServiceAccount:
			sas[meta.GetNamespace()+"/"+meta.GetName()] = true
			kube = append(kube, o)
		case *corev1.ConfigMap, *corev1.Secret, *corev1.PersistentVolumeClaim, *corev1.LimitRange:
			kube = append(kube, o)
		}
	}
	// Every namespace has a default service account; named ones (and the one Tekton's
	// config-defaults names) are assumed to exist.
	defaultSA := config.FromContextOrDefaults(ctx).Defaults.DefaultServiceAccount
	for _, r := range runs {
		for _, sa := range []string{"default", defaultSA, r.CustomRun.Spec.ServiceAccountName} {
			if k := r.CustomRun.Namespace + "/" + sa; sa != "" && !sas[k] {
				sas[k] = true
				kube = append(kube, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: r.CustomRun.Namespace}})
			}
		}
	}
	// No ResolutionRequests offline, and no registry unless asked for: `resolver:` refs,
	// and steps and sidecars without a command, fail, naming the field.
	stages := &prepare.Stages{
		Images:            opts.Images,
		EntrypointImage:   opts.EntrypointImage,
		KubeClient:        k8sfake.NewSimpleClientset(kube...),
		PipelineClient:    tektonfake.NewSimpleClientset(tekton...),
		PodLevelResources: opts.PodLevelResources,
	}
	if opts.LookUpEntrypoints {
		if stages.EntrypointCache, err = pod.NewEntrypointCache(stages.KubeClient); err != nil {
			return nil, err
		}
	}
	var results []Result
	for _, r := range runs {
		out, err := renderRun(ctx, stages, r.CustomRun)
		if err != nil {
			err = fmt.Errorf("%s: %s %s: %w", r.Source, r.Kind, r.Name, err)
		}
		results = append(results, Result{Run: r, Output: out, Err: err})
	}
	return results, nil
}

// admit validates a StepAction as Tekton's validating webhook does when it is applied,
// in the version it is written in: a run that names it reads it from the API server,
// which holds only StepActions that passed. (Pipelines and Tasks are validated where
// resolution reads them, as Tekton's reconcilers validate them; StepActions read from
// the cluster are not.)
func admit(ctx context.Context, d Document) error {
	var err *apis.FieldError
	switch o := d.Object.(type) {
	case *v1beta1.StepAction:
		if d.alpha != nil {
			err = d.alpha.Validate(ctx)
		} else {
			err = o.Validate(ctx)
		}
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: StepAction %s: invalid: %w", d.Source, d.Object.(metav1.Object).GetName(), err)
	}
	return nil
}

// renderRun prepares the first attempt of one run, the way the controller does but for
// the TaskRuns' UIDs, which only the API server gives.
func renderRun(ctx context.Context, stages *prepare.Stages, cr *v1beta1.CustomRun) (_ *assemble.Output, err error) {
	defer recovered("", &err)
	prepared, err := stages.Prepare(ctx, cr)
	if err != nil {
		return nil, err
	}
	return prepared.Assemble(ctx, 0, nil)
}

// WriteYAML prints an Output as YAML documents: PVCs, child TaskRuns, then the Pod.
func WriteYAML(w io.Writer, out *assemble.Output) error {
	var objs []any
	for _, p := range out.PVCs {
		objs = append(objs, p)
	}
	for _, tr := range out.TaskRuns {
		objs = append(objs, tr)
	}
	objs = append(objs, out.Pod)
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "---\n%s", y); err != nil {
			return err
		}
	}
	return nil
}

// OneLine folds an error onto one line, as the CLI prints it.
func OneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
