// Package v1alpha1 holds the PipelineInPod custom task's API: what a CustomRun of kind
// PipelineInPod may carry, and how a PipelineRun maps onto one.
package v1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const (
	// APIVersion and Kind select this controller in a taskRef/customRef/customSpec (docs/design.md: fixed contracts).
	APIVersion = "tekton.dev/v1alpha1"
	Kind       = "PipelineInPod"

	// ManagedBy is the app.kubernetes.io/managed-by value of everything this controller creates.
	ManagedBy = "pipelineinpod"

	// TaskRunManagedBy is the spec.managedBy of every child TaskRun: Tekton's TaskRun
	// controller leaves TaskRuns managed by another controller alone, so it neither
	// re-marks them pending (docs/design.md hazard 1) nor stops sidecars in the shared pod
	// (hazard 2) nor retries them.
	TaskRunManagedBy = "pipelineinpod.tekton.dev/controller"
)

// ChildLabels are the labels of everything made for a CustomRun (child TaskRuns, the
// pod, PVCs): the managed-by label is what the controller's filtered informers select,
// Tekton's customRun label finds a run's children.
func ChildLabels(cr *v1beta1.CustomRun) map[string]string {
	return map[string]string{pipeline.CustomRunKey: cr.Name, v1.ManagedByLabelKey: ManagedBy}
}

// Spec is the `spec` of an inline customSpec: the part of a PipelineRun's spec that a
// CustomRun has no field for. Params, workspaces, serviceAccountName, timeout and
// retries come from the CustomRun itself.
type Spec struct {
	PipelineRef     *v1.PipelineRef            `json:"pipelineRef,omitempty"`
	PipelineSpec    *v1.PipelineSpec           `json:"pipelineSpec,omitempty"`
	Timeouts        *v1.TimeoutFields          `json:"timeouts,omitempty"`
	TaskRunTemplate v1.PipelineTaskRunTemplate `json:"taskRunTemplate,omitempty"`
	TaskRunSpecs    []v1.PipelineTaskRunSpec   `json:"taskRunSpecs,omitempty"`
}

// IsPipelineInPod tells whether a CustomRun is ours to reconcile.
func IsPipelineInPod(cr *v1beta1.CustomRun) bool {
	switch {
	case cr.Spec.CustomRef != nil:
		return cr.Spec.CustomRef.APIVersion == APIVersion && string(cr.Spec.CustomRef.Kind) == Kind
	case cr.Spec.CustomSpec != nil:
		return cr.Spec.CustomSpec.APIVersion == APIVersion && cr.Spec.CustomSpec.Kind == Kind
	}
	return false
}

// SpecOf returns what a CustomRun asks to run. A customRef names a Pipeline of the
// CustomRun's namespace (or carries a resolver); a customSpec carries a Spec.
func SpecOf(cr *v1beta1.CustomRun) (*Spec, error) {
	if !IsPipelineInPod(cr) {
		return nil, fmt.Errorf("spec.customRef/customSpec: not a %s %s", APIVersion, Kind)
	}
	if ref := cr.Spec.CustomRef; ref != nil {
		if ref.Name == "" && ref.Resolver == "" {
			return nil, fmt.Errorf("spec.customRef.name: the name of a Pipeline (or a resolver) is required")
		}
		pr := &v1.PipelineRef{Name: ref.Name}
		if ref.Resolver != "" {
			pr.ResolverRef = v1.ResolverRef{Resolver: v1.ResolverName(ref.Resolver), Params: convertParams(ref.Params)}
		}
		return &Spec{PipelineRef: pr}, nil
	}
	s := &Spec{}
	raw := cr.Spec.CustomSpec.Spec.Raw
	if len(raw) == 0 {
		return nil, fmt.Errorf("spec.customSpec.spec: a pipelineRef or a pipelineSpec is required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("spec.customSpec.spec: %w", err)
	}
	if (s.PipelineRef == nil) == (s.PipelineSpec == nil) {
		return nil, fmt.Errorf("spec.customSpec.spec: exactly one of pipelineRef and pipelineSpec is required")
	}
	return s, nil
}

// Params returns the CustomRun's params in the v1 form the Pipeline machinery takes.
func Params(cr *v1beta1.CustomRun) v1.Params { return convertParams(cr.Spec.Params) }

// Workspaces returns the CustomRun's workspace bindings in v1 form.
func Workspaces(cr *v1beta1.CustomRun) []v1.WorkspaceBinding {
	var out []v1.WorkspaceBinding
	mustRoundTrip(cr.Spec.Workspaces, &out)
	return out
}

// FromPipelineRun turns a PipelineRun into the CustomRun that runs the same Pipeline,
// params, workspaces, timeouts and task-run template in one pod: "run this one in a pod".
func FromPipelineRun(pr *v1.PipelineRun) (*v1beta1.CustomRun, error) {
	s := Spec{
		PipelineRef:     pr.Spec.PipelineRef,
		PipelineSpec:    pr.Spec.PipelineSpec,
		Timeouts:        pr.Spec.Timeouts,
		TaskRunTemplate: pr.Spec.TaskRunTemplate,
		TaskRunSpecs:    pr.Spec.TaskRunSpecs,
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	cr := &v1beta1.CustomRun{
		TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1beta1", Kind: "CustomRun"},
		ObjectMeta: metav1.ObjectMeta{
			Name:         pr.Name,
			GenerateName: pr.GenerateName,
			Namespace:    pr.Namespace,
			Labels:       pr.Labels,
			Annotations:  pr.Annotations,
		},
		Spec: v1beta1.CustomRunSpec{
			CustomSpec: &v1beta1.EmbeddedCustomRunSpec{
				TypeMeta: runtime.TypeMeta{APIVersion: APIVersion, Kind: Kind},
				Spec:     runtime.RawExtension{Raw: raw},
			},
			ServiceAccountName: pr.Spec.TaskRunTemplate.ServiceAccountName,
		},
	}
	mustRoundTrip(pr.Spec.Params, &cr.Spec.Params)
	mustRoundTrip(pr.Spec.Workspaces, &cr.Spec.Workspaces)
	return cr, nil
}

// The v1beta1 and v1 param and workspace types share one JSON form; a round trip is the
// conversion Tekton's own webhook performs for them.
func convertParams(in v1beta1.Params) v1.Params {
	var out v1.Params
	mustRoundTrip(in, &out)
	return out
}

func mustRoundTrip(in, out any) {
	b, err := json.Marshal(in)
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		panic(fmt.Sprintf("converting %T to %T: %v", in, out, err))
	}
}
