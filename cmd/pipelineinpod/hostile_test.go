package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every hostile input in pkg/render/testdata/hostile ends, from the shell, in exit 1
// and one line naming the document, or (reserved names, which are renamed) in a pod;
// never in a stack trace.
func TestHostileInputsFromTheShell(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pipelineinpod")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join("..", "..", "pkg", "render", "testdata", "hostile", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no hostile inputs")
	}
	for _, f := range files {
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(t.Context(), bin, "render", "-f", f)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if strings.Contains(stderr.String(), "goroutine") || strings.Contains(stderr.String(), "panic") {
			t.Errorf("%s: a stack trace reached the user:\n%s", f, stderr.String())
		}
		if filepath.Base(f) == "reserved-names.yaml" {
			if err != nil || !strings.Contains(stdout.String(), "\nkind: Pod\n") {
				t.Errorf("%s: %v\n%s", f, err, stderr.String())
			}
			continue
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("%s: want exit 1, got %v", f, err)
		}
		if len(lines) != 1 || !strings.HasPrefix(lines[0], f+"#") || !strings.Contains(lines[0], ": ") {
			t.Errorf("%s: want one line naming the document, got %q", f, stderr.String())
		}
	}
}
