package render

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/test/names"
)

func renderYAML(t *testing.T, name string, doc []byte) string {
	t.Helper()
	docs, err := Parse(name, doc)
	if err != nil {
		t.Fatal(err)
	}
	names.TestingSeed()
	res, err := Render(context.Background(), DefaultOptions(), docs)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if err := WriteYAML(&out, r.Output); err != nil {
			t.Fatal(err)
		}
	}
	return out.String()
}

// A tekton.dev/v1alpha1 StepAction runs as the same StepAction written as v1beta1 does:
// the API server serves it converted, field for field (Tekton's ConvertTo).
func TestV1alpha1StepActionRendersAsV1beta1(t *testing.T) {
	alpha, err := os.ReadFile(filepath.Join("testdata", "stepaction-v1alpha1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(alpha, []byte("apiVersion: tekton.dev/v1alpha1\nkind: StepAction")) {
		t.Fatal("testdata no longer holds a v1alpha1 StepAction")
	}
	beta := bytes.Replace(alpha, []byte("apiVersion: tekton.dev/v1alpha1\nkind: StepAction"), []byte("apiVersion: tekton.dev/v1beta1\nkind: StepAction"), 1)
	if d := cmp.Diff(renderYAML(t, "beta.yaml", beta), renderYAML(t, "alpha.yaml", alpha)); d != "" {
		t.Errorf("v1alpha1 renders otherwise than v1beta1 (-v1beta1 +v1alpha1):\n%s", d)
	}
}

// A StepAction is validated as Tekton's webhook validates it when it is applied, in the
// version it is written in: v1alpha1 checks that a param's default refers to declared
// params, v1beta1 does not.
func TestStepActionAdmission(t *testing.T) {
	const doc = `apiVersion: tekton.dev/%s
kind: StepAction
metadata: {name: sa}
spec:
  image: busybox
  command: ["true"]
  params:
  - name: p
    default: $(params.missing)
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks: [{name: t, taskSpec: {steps: [{name: s, ref: {name: sa}}]}}]
`
	for _, tc := range []struct{ version, wantErr string }{
		{"v1alpha1", `doc.yaml#0: StepAction sa: invalid: param "p" default value references param "missing" which is not defined`},
		{"v1beta1", ""},
		{"v1alpha1-no-image", "doc.yaml#0: StepAction sa: invalid: missing field(s): spec.Image"},
	} {
		t.Run(tc.version, func(t *testing.T) {
			text := strings.Replace(doc, "%s", strings.TrimSuffix(tc.version, "-no-image"), 1)
			if strings.HasSuffix(tc.version, "-no-image") {
				text = strings.Replace(text, "  image: busybox\n", "", 1)
			}
			docs, err := Parse("doc.yaml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Render(context.Background(), DefaultOptions(), docs)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(OneLine(err), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
