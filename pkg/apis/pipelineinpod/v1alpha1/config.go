package v1alpha1

import (
	"context"

	"github.com/tektoncd/pipeline/pkg/apis/config"
)

// FeatureFlags are the Tekton feature flags PipelineInPod validates and builds with.
// One pod can hold every Tekton feature whose behaviour is the pod's own (alpha fields
// such as pipelines-in-pipelines, param enums, step actions), so all are on; what one
// pod cannot honour is refused by compile with a reason, whatever the flags say.
var FeatureFlags = map[string]string{
	"enable-api-fields":   config.AlphaAPIFields,
	"enable-param-enum":   "true",
	"enable-step-actions": "true",
}

// WithTektonConfig returns ctx carrying Tekton's configuration (defaults and the
// FeatureFlags above), which Tekton's SetDefaults, Validate and pod builder read.
func WithTektonConfig(ctx context.Context) (context.Context, error) {
	ff, err := config.NewFeatureFlagsFromMap(FeatureFlags)
	if err != nil {
		return nil, err
	}
	cfg := config.FromContextOrDefaults(ctx)
	cfg.FeatureFlags = ff
	return config.ToContext(ctx, cfg), nil
}
