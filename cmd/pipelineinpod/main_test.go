package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/pipelineinpod/pipelineinpod/test/conformance/corpus"
)

// The CLI is run as a user would, on Tekton's examples from the pinned module (TaskRun
// examples lifted into PipelineRuns first), with the feature flags each needs given as
// Tekton's feature-flags ConfigMap (-tekton-config): every example marked pass renders
// (exit 0, YAML with a Pod), every one marked refused fails with exit 1 and one line per
// run naming the document, the field and the cause.
func TestRenderFromTheShell(t *testing.T) {
	dir, err := corpus.ExamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := corpus.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	list, err := corpus.Expectations()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "pipelineinpod")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ran := 0
	for _, f := range files {
		e, ok := list[f]
		if !ok {
			t.Errorf("%s: not marked in %s", f, corpus.ExpectationsFile)
			continue
		}
		if e.Expect == corpus.Skip {
			continue
		}
		args := []string{"render"}
		if len(e.Flags) > 0 {
			flags := filepath.Join(tmp, strings.ReplaceAll(f, "/", "_")+".feature-flags.yaml")
			if err := os.WriteFile(flags, featureFlags(t, e.Flags), 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, "-tekton-config", flags)
		}
		path := filepath.Join(dir, filepath.FromSlash(f))
		if strings.HasPrefix(f, "taskruns/") {
			raw, err := corpus.Load(dir, f)
			if err != nil {
				t.Fatal(err)
			}
			path = filepath.Join(tmp, strings.ReplaceAll(f, "/", "_"))
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ran++
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(t.Context(), bin, append(args, "-f", path)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		runErr := cmd.Run()
		if e.Expect == corpus.Refused {
			var ee *exec.ExitError
			if !errors.As(runErr, &ee) || ee.ExitCode() != 1 {
				t.Errorf("%s: want exit 1, got %v", f, runErr)
			}
			for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if !strings.HasPrefix(l, path+"#") || !strings.Contains(l, "spec.") || !strings.Contains(l, e.Cause) {
					t.Errorf("%s: want one line per failed run naming the document, the field and %q, got %q", f, e.Cause, l)
				}
			}
			continue
		}
		if runErr != nil || !strings.Contains(stdout.String(), "\nkind: Pod\n") {
			t.Errorf("%s: %v\n%s", f, runErr, stderr.String())
		}
	}
	if ran < 50 {
		t.Errorf("only %d examples rendered from the shell", ran)
	}
}

// featureFlags is Tekton's feature-flags ConfigMap with data, as kubectl prints it.
func featureFlags(t *testing.T, data map[string]string) []byte {
	t.Helper()
	b, err := yaml.Marshal(&corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: config.GetFeatureFlagsConfigName(), Namespace: "tekton-pipelines"},
		Data:       data,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
