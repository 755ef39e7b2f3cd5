package v1alpha1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/config"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func cm(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tekton-pipelines"}, Data: data}
}

// TektonConfig reads Tekton's ConfigMaps with Tekton's store: Tekton's defaults for what
// they leave out, an error naming the ConfigMap for what Tekton would not accept.
func TestTektonConfig(t *testing.T) {
	type got struct {
		APIFields, NoMatchPolicy, ServiceAccount string
		TimeoutMinutes                           int
		ParamEnum                                bool
	}
	for _, c := range []struct {
		name    string
		cms     []*corev1.ConfigMap
		want    got
		wantErr string
	}{{
		name: "none: Tekton's defaults",
		want: got{config.DefaultEnableAPIFields, config.DefaultNoMatchPolicyConfig, config.DefaultServiceAccountValue, config.DefaultTimeoutMinutes, false},
	}, {
		name: "feature-flags and config-defaults",
		cms: []*corev1.ConfigMap{
			cm("feature-flags", map[string]string{"enable-api-fields": "alpha", "enable-param-enum": "true", "trusted-resources-verification-no-match-policy": "fail"}),
			cm("config-defaults", map[string]string{"default-timeout-minutes": "5", "default-service-account": "builder"}),
		},
		want: got{config.AlphaAPIFields, config.FailNoMatchPolicy, "builder", 5, true},
	}, {
		name:    "a value Tekton refuses",
		cms:     []*corev1.ConfigMap{cm("feature-flags", map[string]string{"enable-api-fields": "gamma"})},
		wantErr: `ConfigMap "feature-flags": `,
	}, {
		name:    "not one of Tekton's",
		cms:     []*corev1.ConfigMap{cm("feature-flag", nil)},
		wantErr: `ConfigMap "feature-flag": not one of Tekton's configuration ConfigMaps (config-defaults, `,
	}} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := TektonConfig(c.cms...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := got{cfg.FeatureFlags.EnableAPIFields, cfg.FeatureFlags.VerificationNoMatchPolicy, cfg.Defaults.DefaultServiceAccount, cfg.Defaults.DefaultTimeoutMinutes, cfg.FeatureFlags.EnableParamEnum}
			if d := cmp.Diff(c.want, g); d != "" {
				t.Errorf("config (-want +got):\n%s", d)
			}
		})
	}
}
