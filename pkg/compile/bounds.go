package compile

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/resolve"
)

// fits refuses a matrix whose fan-out would take the run over resolve.MaxTasks. Resolve
// counts a matrix as written; only here, after the run's params are substituted, is
// the number of its instances known (a run param may carry an array of any length),
// and it is checked before a single instance is made.
func (c *Compiled) fits(field string, pt v1.PipelineTask) error {
	n := pt.Matrix.CountCombinations()
	if n > resolve.MaxTasks-len(c.Tasks) {
		return fmt.Errorf("%s.matrix: %d combinations on top of %d tasks make more than the %d tasks one pod runs; split the Pipeline or shorten the matrix", field, n, len(c.Tasks), resolve.MaxTasks)
	}
	return nil
}

// MaxExpandedBytes bounds what substituting params may make of one spec. A reference
// repeated n times to a value of v bytes becomes n·v bytes (a 200 KB PipelineRun can
// ask for gigabytes), and Tekton's substitution builds the result before anything can
// weigh it. Twice the 1.4 MiB a pod may weigh: a spec that expands beyond it cannot fit
// into the pod anyway, and the margin keeps the estimate, which takes every reference
// at the size of its value, from refusing what would fit.
const MaxExpandedBytes = 3 << 20

// Expansion estimates the bytes of spec once params are substituted into it, without
// substituting: the spec's own JSON plus, for every $(params.<name>…) reference in it,
// the size of that param's value (or default). It is an upper bound for the params'
// part, as an array or object reference takes at most the whole value.
func Expansion(spec any, params v1.Params, defaults v1.ParamSpecs) (int, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return 0, err
	}
	size := map[string]int{}
	for _, d := range defaults {
		if d.Default != nil {
			size[d.Name] = valueSize(*d.Default)
		}
	}
	for _, p := range params {
		size[p.Name] = valueSize(p.Value)
	}
	total := len(b)
	text := string(b)
	for {
		i := strings.Index(text, "params")
		if i < 0 {
			return total, nil
		}
		text = text[i+len("params"):]
		name := refName(text)
		total += size[name]
		if total < 0 || total > math.MaxInt/2 {
			return math.MaxInt / 2, nil
		}
	}
}

// refName reads the param name after "params": ".name" or "['name']" / "[\"name\"]"
// (JSON-escaped as [\"name\"]).
func refName(s string) string {
	switch {
	case strings.HasPrefix(s, "."):
		s = s[1:]
		end := strings.IndexFunc(s, func(r rune) bool {
			return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		})
		if end < 0 {
			return s
		}
		return s[:end]
	case strings.HasPrefix(s, "['"), strings.HasPrefix(s, `[\"`):
		s = strings.TrimPrefix(strings.TrimPrefix(s, "['"), `[\"`)
		if end := strings.IndexAny(s, `'\`); end >= 0 {
			return s[:end]
		}
	}
	return ""
}

func valueSize(v v1.ParamValue) int {
	n := len(v.StringVal)
	for _, s := range v.ArrayVal {
		n += len(s) + 3
	}
	for k, s := range v.ObjectVal {
		n += len(k) + len(s) + 6
	}
	return n
}

// ExpansionFits refuses a spec whose substitution Expansion takes over MaxExpandedBytes.
func ExpansionFits(field string, spec any, params v1.Params, defaults v1.ParamSpecs) error {
	n, err := Expansion(spec, params, defaults)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if n > MaxExpandedBytes {
		return fmt.Errorf("%s: substituting params would make about %d bytes, over the %d one pod can hold; pass large values through a workspace instead of a param referenced many times", field, n, MaxExpandedBytes)
	}
	return nil
}
