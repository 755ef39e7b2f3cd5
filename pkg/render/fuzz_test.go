package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzRender runs YAML bytes through parse and every stage, as `pipelineinpod render`
// does. Bad input must come back as an error, never a panic (a recovered one is
// reported as an internal error, which is a bug too), and in bounded time.
func FuzzRender(f *testing.F) {
	for _, pattern := range []string{"testdata/*.yaml", "testdata/hostile/*.yaml", "../../examples/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	ctx := alpha(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// The stages run beside a timer, so that an input that never ends is reported
		// (and kept in testdata/fuzz) instead of stalling the fuzzer.
		failure := make(chan error, 1)
		go func() { failure <- renderOnce(ctx, data) }()
		select {
		case err := <-failure:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("rendering %d bytes did not end in 10 s", len(data))
		}
	})
}

// renderOnce parses and renders data; a recovered panic (an internal error) is a bug.
func renderOnce(ctx context.Context, data []byte) error {
	docs, err := Parse("fuzz.yaml", data)
	if err != nil {
		if strings.Contains(err.Error(), "internal error") {
			return err
		}
		return nil
	}
	results, err := Render(ctx, DefaultOptions(), docs)
	if err != nil && strings.Contains(err.Error(), "internal error") {
		return err
	}
	for _, r := range results {
		if r.Err != nil && strings.Contains(r.Err.Error(), "internal error") {
			return r.Err
		}
	}
	return nil
}
