package assemble_test

import (
	"encoding/json"
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
	"github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
	"github.com/pipelineinpod/pipelineinpod/pkg/compile/compiletest"
	"github.com/pipelineinpod/pipelineinpod/pkg/render"
)

// imageRegistry is an in-process registry.
func imageRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// pushImage puts into the registry at host an image with this ENTRYPOINT and CMD, and
// returns its reference by tag and by digest.
func pushImage(t *testing.T, host, repo string, entrypoint, cmd []string) (string, string) {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &crv1.ConfigFile{
		OS: "linux", Architecture: runtime.GOARCH,
		Config: crv1.Config{Entrypoint: entrypoint, Cmd: cmd},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(host + "/" + repo + ":1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r.String(), r.Context().Digest(d.String()).String()
}

// A step or sidecar without command runs its image's, looked up in the image's registry
// with Tekton's entrypoint cache: the image is pinned by digest and the entrypoint gets
// the command of each platform (with the image's CMD unless the container has args).
// A sidecar is wrapped too, so it can be stopped when its task ends.
func TestEntrypointLookedUpInTheRegistry(t *testing.T) {
	host := imageRegistry(t)
	// Two images: Tekton's cache keeps one command line per image, whichever container
	// asked first, args or not.
	server, serverPinned := pushImage(t, host, "tools/server", []string{"/usr/bin/server"}, []string{"--port", "80"})
	daemon, daemonPinned := pushImage(t, host, "tools/daemon", []string{"/usr/bin/daemon"}, []string{"--foreground"})
	run, err := compiletest.Compile(t, `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps:
        - {name: plain, image: `+server+`}
        - {name: with-args, image: `+daemon+`, args: [--verbose]}
        sidecars:
        - {name: db, image: `+server+`}
        - {name: db-args, image: `+daemon+`, args: [--fast]}
        - {name: own, image: busybox, command: [sleep], args: ["60"]}
`)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := pod.NewEntrypointCache(run.KubeClient)
	if err != nil {
		t.Fatal(err)
	}
	opts := render.DefaultOptions()
	out, err := assemble.Pod(compiletest.Context(t), assemble.Options{
		Images: opts.Images, EntrypointImage: opts.EntrypointImage, KubeClient: run.KubeClient,
		EntrypointCache: cache, Resolver: run.Resolver,
	}, run.Compiled)
	if err != nil {
		t.Fatal(err)
	}
	plat := "linux/" + runtime.GOARCH
	type looked struct {
		Image    string
		Commands map[string][]string
		// Entrypoint is the -entrypoint flag given to the wrapper; Args what follows "--".
		Entrypoint string
		Args       []string
	}
	want := map[string]looked{
		"step-t-plain":           {Image: serverPinned, Commands: map[string][]string{plat: {"/usr/bin/server", "--port", "80"}}},
		"step-t-with-args":       {Image: daemonPinned, Commands: map[string][]string{plat: {"/usr/bin/daemon"}}, Args: []string{"--verbose"}},
		"step-t-sidecar-db":      {Image: serverPinned, Commands: map[string][]string{plat: {"/usr/bin/server", "--port", "80"}}},
		"step-t-sidecar-db-args": {Image: daemonPinned, Commands: map[string][]string{plat: {"/usr/bin/daemon"}}, Args: []string{"--fast"}},
		"step-t-sidecar-own":     {Image: "busybox", Entrypoint: "sleep", Args: []string{"60"}},
	}
	got := map[string]looked{}
	for name := range want {
		c := container(t, out.Pod, name)
		l := looked{Image: c.Image}
		if env := envValue(c, "TEKTON_PLATFORM_COMMANDS"); env != "" {
			if err := json.Unmarshal([]byte(env), &l.Commands); err != nil {
				t.Fatal(err)
			}
		}
		if c.Command[0] != "/tekton/bin/entrypoint" {
			t.Errorf("%s: command %v, want the entrypoint", name, c.Command)
		}
		for i, a := range c.Args {
			if a == "-entrypoint" {
				l.Entrypoint = c.Args[i+1]
			}
			if a == "--" {
				l.Args = c.Args[i+1:]
				break
			}
		}
		if len(l.Args) == 0 {
			l.Args = nil
		}
		got[name] = l
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("containers (-want +got):\n%s", d)
	}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// Without a registry to ask (render), a sidecar without command is refused, naming it.
func TestSidecarWithoutCommandNeedsARegistry(t *testing.T) {
	docs, err := render.Parse("doc.yaml", []byte(`apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps: [{name: s, image: busybox, script: "true"}]
        sidecars: [{name: dind, image: docker, args: [--debug]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(compiletest.Context(t), render.DefaultOptions(), docs)
	if err != nil {
		t.Fatal(err)
	}
	want := `spec.sidecars[0] (dind): no command or script, and the entrypoint of image "docker"`
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), want) {
		t.Errorf("err = %v, want one containing %q", res[0].Err, want)
	}
}
