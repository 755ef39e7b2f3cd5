package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/config"
)

// -tekton-config files: Tekton's ConfigMaps as kubectl prints them; anything else, or a
// value Tekton refuses, is an error naming the document.
func TestReadTektonConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: feature-flags, namespace: tekton-pipelines}
data: {enable-api-fields: alpha}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: config-defaults, namespace: tekton-pipelines}
data: {default-timeout-minutes: "9"}
`)
	cfg, err := ReadTektonConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FeatureFlags.EnableAPIFields != config.AlphaAPIFields || cfg.Defaults.DefaultTimeoutMinutes != 9 {
		t.Errorf("read enable-api-fields %q, default-timeout-minutes %d", cfg.FeatureFlags.EnableAPIFields, cfg.Defaults.DefaultTimeoutMinutes)
	}
	for name, c := range map[string]struct{ body, want string }{
		"pipeline.yaml": {"apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata: {name: p}\nspec: {}\n", "pipeline.yaml#0: *v1.Pipeline: Tekton's configuration is ConfigMaps"},
		"bad.yaml":      {"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-defaults}\ndata: {default-timeout-minutes: soon}\n", `bad.yaml#0: ConfigMap "config-defaults": failed parsing default config "default-timeout-minutes"`},
	} {
		if _, err := ReadTektonConfig(write(name, c.body)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
}
