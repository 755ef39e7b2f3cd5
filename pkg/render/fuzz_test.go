package render

import (
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
		start := time.Now()
		docs, err := Parse("fuzz.yaml", data)
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatal(err)
			}
			return
		}
		results, err := Render(ctx, DefaultOptions(), docs)
		if err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatal(err)
		}
		for _, r := range results {
			if r.Err != nil && strings.Contains(r.Err.Error(), "internal error") {
				t.Fatal(r.Err)
			}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("rendering %d bytes took %v", len(data), d)
		}
	})
}
