package render

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	crv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// With LookUpEntrypoints, render asks the registry for the command of a step or sidecar
// that has none, as the controller does; without, it refuses them.
func TestLookUpEntrypoints(t *testing.T) {
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer s.Close()
	img, err := mutate.ConfigFile(empty.Image, &crv1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH, Config: crv1.Config{Entrypoint: []string{"/bin/serve"}}})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(s.URL, "http://") + "/serve:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Parse("doc.yaml", []byte(`apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps: [{name: s, image: `+ref.String()+`, args: [x]}]
        sidecars: [{name: sc, image: `+ref.String()+`}]
`))
	if err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	res, err := Render(context.Background(), opts, docs)
	if err != nil || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "cannot be looked up without a registry") {
		t.Fatalf("without lookups: %v %v", err, res[0].Err)
	}
	opts.LookUpEntrypoints = true
	res, err = Render(context.Background(), opts, docs)
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	got := map[string]string{}
	for _, c := range res[0].Output.Pod.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == "TEKTON_PLATFORM_COMMANDS" {
				got[c.Name] = c.Image + " " + e.Value
			}
		}
	}
	pinned := ref.Context().Digest(digest.String()).String()
	cmds := `{"linux/` + runtime.GOARCH + `":["/bin/serve"]}`
	want := map[string]string{"step-t-s": pinned + " " + cmds, "step-t-sidecar-sc": pinned + " " + cmds}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("looked up (-want +got):\n%s", d)
	}
}
