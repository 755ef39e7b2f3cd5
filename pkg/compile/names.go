package compile

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonvalidate "github.com/tektoncd/pipeline/pkg/apis/validate"
	"k8s.io/apimachinery/pkg/util/validation"
)

// validateRunName refuses a run name Tekton's own webhook refuses for a CustomRun or a
// PipelineRun (longer than 63 characters): every child TaskRun, the pod and the PVCs
// carry it as the value of a label, which may not be longer.
func validateRunName(cr *v1beta1.CustomRun) error {
	if err := tektonvalidate.ObjectMetadata(cr.GetObjectMeta()).ViaField("metadata"); err != nil {
		return fmt.Errorf("%s: %s", strings.Join(err.Paths, ","), err.Message)
	}
	return nil
}

// validLabels refuses labels the API server would refuse on a child TaskRun (a Pipeline
// or Task name from a resolver that is longer than a label value, a taskSpec's
// metadata), naming the label, so that the run fails here rather than at creation.
func validLabels(field string, labels map[string]string) error {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("%s.metadata.labels: invalid label key %q: %s", field, k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(labels[k]); len(errs) > 0 {
			return fmt.Errorf("%s.metadata.labels[%s]: invalid label value %q: %s", field, k, labels[k], strings.Join(errs, "; "))
		}
	}
	return nil
}
