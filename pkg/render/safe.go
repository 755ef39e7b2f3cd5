package render

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// recovered turns a panic in a stage into an error, so a user sees one line naming the
// document rather than a Go stack trace, and the other runs still render. The stack's
// innermost frame of this project stays in the message, for the bug report.
func recovered(prefix string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	*err = fmt.Errorf("%sinternal error (please report it): %v%s", prefix, r, where(string(debug.Stack())))
}

// where finds the first frame of this project in a stack below the panic itself.
func where(stack string) string {
	lines := strings.Split(stack, "\n")
	for i, l := range lines {
		if strings.Contains(l, "github.com/pipelineinpod/pipelineinpod/") && !strings.Contains(l, "pkg/render.recovered") && i+1 < len(lines) {
			return " at " + strings.TrimSpace(lines[i+1])
		}
	}
	return ""
}
