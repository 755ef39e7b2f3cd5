package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The CLI is run as a user would: every open conformance file renders (exit 0, YAML
// with a Pod), every unsupported one fails with exit 1 and one line naming the cause.
func TestRenderFromTheShell(t *testing.T) {
	dir := os.Getenv("PIP_CONFORMANCE_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "conformance")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("SKIPPED: no conformance corpus at %s (set PIP_CONFORMANCE_DIR): %v", dir, err)
	}
	bin := filepath.Join(t.TempDir(), "pipelineinpod")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(t.Context(), bin, "render", "-f", p)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		runErr := cmd.Run()
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "unsupported") {
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if ee := (*exec.ExitError)(nil); !errors.As(runErr, &ee) || ee.ExitCode() != 1 {
				t.Errorf("%s: want exit 1, got %v", rel, runErr)
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, p+"#") || !strings.Contains(l, "spec.") {
					t.Errorf("%s: want one line per failed run naming the document and the field, got %q", rel, l)
				}
			}
			return nil
		}
		if runErr != nil || !strings.Contains(stdout.String(), "\nkind: Pod\n") {
			t.Errorf("%s: %v\n%s", rel, runErr, stderr.String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
