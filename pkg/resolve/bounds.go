package resolve

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

const (
	// MaxDepth bounds how deep pipelines-in-pipelines (and PipelineInPod tasks naming a
	// Pipeline) may nest. Tekton sets no depth limit; it only refuses a child whose
	// Pipeline already runs among its ancestors. Here every level is flattened into one
	// pod at once, so a chain that is not a cycle (a0 → a1 → … → a1000) must be bounded
	// too; 10 levels is far more than pipelines are nested in practice.
	MaxDepth = 10
	// MaxTasks bounds the PipelineTasks of one run, all levels flattened and every
	// matrix instance counted. One pod holds them all: a task with one small step costs
	// about 1.8 KB of pod spec, so 256 such tasks take a third of the 1.4 MiB the pod
	// may weigh and leave room for real scripts and env; and rendering costs about 4 ms
	// of CPU per task, so 256 keep a render around one second. It equals Tekton's default
	// default-max-matrix-combinations-count, so any one matrix Tekton accepts by default
	// fits in a pod.
	MaxTasks = 256
	// MaxSteps bounds the steps and sidecars of one task. Tekton's pod builder mounts
	// every step's run directory into every step, so a task's containers grow with the
	// square of its steps: 500 steps make a 21 MB pod, 100 steps under 1 MB.
	MaxSteps = 100
	// MaxContainers bounds the steps and sidecars of the whole run: a container takes at
	// least 1.4 KB of the pod's spec (name, image, entrypoint flags, mounts), so more
	// than 1000 can never fit in the 1.4 MiB a pod may weigh.
	MaxContainers = 1000
)

// walk is the state of one resolution: the chain of Pipelines being resolved, from the
// run's down, and the tasks counted so far. It is checked before anything more is
// fetched, so a cyclic or exploding input costs no more than MaxTasks fetches.
type walk struct {
	chain      []link
	tasks      int
	containers int
}

// link is one Pipeline of the chain: its name for messages and, for a referenced one,
// the identity a cycle repeats ("" for an inline pipelineSpec, which cannot repeat).
type link struct {
	name, id string
}

// root starts the chain with the run's own Pipeline.
func (w *walk) root(name string, ref *v1.PipelineRef) error {
	id, err := refID(ref)
	if err != nil {
		return err
	}
	w.chain = []link{{name: name, id: id}}
	return nil
}

// enter checks a pipelines-in-pipelines task before its Pipeline is fetched: it may
// not name a Pipeline already in the chain, nor nest deeper than MaxDepth.
func (w *walk) enter(field string, pt v1.PipelineTask) error {
	refField := field + ".pipelineRef"
	if pt.TaskRef != nil {
		// A PipelineInPod task naming a Pipeline.
		refField = field + ".taskRef"
	}
	l := link{name: pt.Name + " (inline pipelineSpec)"}
	if pt.PipelineSpec == nil && pt.PipelineRef != nil {
		id, err := refID(pt.PipelineRef)
		if err != nil {
			return fmt.Errorf("%s: %w", refField, err)
		}
		l = link{name: refName(pt.PipelineRef), id: id}
	}
	for i, c := range w.chain {
		if l.id != "" && c.id == l.id {
			return fmt.Errorf("%s: pipeline %s: the Pipeline runs itself, so its tasks would never end; remove the reference that closes the cycle", refField, w.names(i, l))
		}
	}
	if len(w.chain) >= MaxDepth+1 {
		return fmt.Errorf("%s: pipeline %s: pipelines nest more than %d levels deep, which one pod does not run", field, w.names(0, l), MaxDepth)
	}
	w.chain = append(w.chain, l)
	return nil
}

// leave ends the Pipeline entered last.
func (w *walk) leave() { w.chain = w.chain[:len(w.chain)-1] }

// count adds a Pipeline's tasks, each matrix instance counted, before they are
// validated or fetched.
func (w *walk) count(field string, ps *v1.PipelineSpec) error {
	for _, list := range [][]v1.PipelineTask{ps.Tasks, ps.Finally} {
		for _, pt := range list {
			n := 1
			if pt.IsMatrixed() {
				n = max(1, pt.Matrix.CountCombinations())
			}
			if n > MaxTasks-w.tasks {
				return fmt.Errorf("%s: the run has more than %d tasks with every pipeline flattened and every matrix instance counted, more than one pod runs; split the Pipeline", field, MaxTasks)
			}
			w.tasks += n
			if pt.TaskSpec != nil {
				if err := w.steps(field, pt.Name, &pt.TaskSpec.TaskSpec, n); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// steps counts a task's containers, n instances of it, before the task is validated.
func (w *walk) steps(field, task string, ts *v1.TaskSpec, n int) error {
	k := len(ts.Steps) + len(ts.Sidecars)
	if k > MaxSteps {
		return fmt.Errorf("%s[%s]: %d steps and sidecars, more than the %d a task may have in one pod (each step mounts every other step's run directory, so a task's pod grows with the square of its steps)", field, task, k, MaxSteps)
	}
	w.containers += k * n
	if w.containers > MaxContainers {
		return fmt.Errorf("%s[%s]: the run has more than %d steps and sidecars, which cannot fit in one pod; split the Pipeline", field, task, MaxContainers)
	}
	return nil
}

// names renders the chain from index i, then l: "a" → "b" → "a".
func (w *walk) names(i int, l link) string {
	var out []string
	for _, c := range w.chain[i:] {
		out = append(out, fmt.Sprintf("%q", c.name))
	}
	return strings.Join(append(out, fmt.Sprintf("%q", l.name)), " → ")
}

// refID is what makes two references the same Pipeline: its name in the run's
// namespace, or its resolver with the resolver's params as written. A param value of
// no known type does not marshal; ignoring that would give every such reference the
// same id and report a cycle that is not there.
func refID(ref *v1.PipelineRef) (string, error) {
	if ref == nil {
		return "", nil
	}
	if ref.Resolver == "" {
		return "name:" + ref.Name, nil
	}
	b, err := json.Marshal(ref)
	if err != nil {
		return "", fmt.Errorf("params: %w", err)
	}
	return "resolver:" + string(b), nil
}

func refName(ref *v1.PipelineRef) string {
	if ref.Name != "" {
		return ref.Name
	}
	return fmt.Sprintf("from resolver %s", ref.Resolver)
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
		name := paramRefName(text)
		total += size[name]
		if total < 0 || total > math.MaxInt/2 {
			return math.MaxInt / 2, nil
		}
	}
}

// paramRefName reads the param name after "params": ".name" or "['name']" / "[\"name\"]"
// (JSON-escaped as [\"name\"]).
func paramRefName(s string) string {
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
