// Package corpus is the default conformance corpus: the examples of the Tekton module
// this repository builds against (examples/v1 of github.com/tektoncd/pipeline, as
// shipped in the module), with expectations.yaml saying what a PipelineInPod run of
// each one must do. Every PipelineRun example runs as it is; every TaskRun example is
// first lifted into a one-task PipelineRun (Lift), so that it runs in one pod too.
//
// The package reads YAML and Tekton's types only (no rendering), so that the render
// tests, the CLI tests and the conformance harness can all share it.
package corpus

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// TektonModule is the module whose examples make the corpus.
const TektonModule = "github.com/tektoncd/pipeline"

// ExamplesSubdir is where the examples live inside the module.
const ExamplesSubdir = "examples/v1"

// ExamplesDir is the examples directory of the Tekton module version go.mod selects,
// as the go command sees it (module cache, or a replace directory).
func ExamplesDir() (string, error) {
	out, err := exec.CommandContext(context.Background(), "go", "list", "-m", "-f", "{{.Dir}}", TektonModule).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("locating module %s (go list -m): %w", TektonModule, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("module %s is not downloaded (run go mod download %s)", TektonModule, TektonModule)
	}
	return filepath.Join(dir, filepath.FromSlash(ExamplesSubdir)), nil
}

// Files lists the YAML files under dir, as slash-separated paths relative to dir, sorted.
func Files(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Marks of an example in expectations.yaml.
const (
	// Pass: every run of the file must succeed (and show Results, when given).
	Pass = "pass"
	// Refused: every run of the file must fail promptly, with a message containing Cause.
	Refused = "refused"
	// Skip: the example is not run, for the listed Reason.
	Skip = "skip"
)

// SkipCategories are the reasons an example may be skipped for; each skip names one.
var SkipCategories = map[string]string{
	"network":    "needs the network: a git server, Tekton Hub, an HTTP server, an OCI registry or the internet",
	"image":      "needs an image that is neither busybox, alpine, bash nor ubuntu, which an offline cluster cannot serve",
	"platform":   "needs something of the cluster beyond a plain Linux node and Tekton's default configuration: Windows nodes, a CSI driver, a LimitRange, a configured default workspace",
	"incomplete": "refers to objects the example itself does not create",
	"gap":        "fails today on a semantics PipelineInPod does not have yet; the reason names it and the open issue that tracks it",
}

// Expectation is one example's entry in expectations.yaml.
type Expectation struct {
	// File is the example's path under examples/v1.
	File string `json:"file"`
	// Expect is Pass, Refused or Skip.
	Expect string `json:"expect"`
	// Cause (Refused) is a phrase the failure message must contain.
	Cause string `json:"cause,omitempty"`
	// Category (Skip) is a key of SkipCategories.
	Category string `json:"category,omitempty"`
	// Reason (Skip) says what exactly the example needs; (Pass, Refused) an optional note.
	Reason string `json:"reason,omitempty"`
	// Results (Pass) are CustomRun results every run of the file must show, for examples
	// that only echo their values.
	Results map[string]string `json:"results,omitempty"`
	// Flags (Pass) are the Tekton feature flags the example needs (FlagsMissing).
	Flags map[string]string `json:"flags,omitempty"`
}

// apiFieldsRank orders the values of enable-api-fields: alpha enables beta and stable too.
var apiFieldsRank = map[string]int{"stable": 0, "beta": 1, "alpha": 2}

// FlagsMissing lists the flags of e that the cluster's feature-flags data does not
// satisfy, as name=want (is "got"). An absent key counts as Tekton's default.
func (e Expectation) FlagsMissing(cluster map[string]string, defaults map[string]string) []string {
	var out []string
	for k, want := range e.Flags {
		got, ok := cluster[k]
		if !ok {
			got = defaults[k]
		}
		satisfied := strings.EqualFold(got, want)
		if k == "enable-api-fields" {
			satisfied = apiFieldsRank[strings.ToLower(got)] >= apiFieldsRank[strings.ToLower(want)]
		}
		if !satisfied {
			out = append(out, fmt.Sprintf("%s=%s (is %q)", k, want, got))
		}
	}
	sort.Strings(out)
	return out
}

//go:embed expectations.yaml
var expectationsYAML []byte

// ExpectationsFile names the embedded list in messages.
const ExpectationsFile = "test/conformance/corpus/expectations.yaml"

// Expectations parses the embedded list, keyed by file, checking every entry.
func Expectations() (map[string]Expectation, error) {
	return ParseExpectations(ExpectationsFile, expectationsYAML)
}

// ParseExpectations parses a list in the format of expectations.yaml.
func ParseExpectations(name string, data []byte) (map[string]Expectation, error) {
	var doc struct {
		Examples []Expectation `json:"examples"`
	}
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := map[string]Expectation{}
	for i, e := range doc.Examples {
		at := fmt.Sprintf("%s: examples[%d] (%s)", name, i, e.File)
		if e.File == "" {
			return nil, fmt.Errorf("%s: file: required", at)
		}
		if _, dup := out[e.File]; dup {
			return nil, fmt.Errorf("%s: file: listed twice", at)
		}
		switch e.Expect {
		case Pass:
			for k, v := range e.Flags {
				if k == "enable-api-fields" {
					if _, ok := apiFieldsRank[v]; !ok {
						return nil, fmt.Errorf("%s: flags: enable-api-fields %q is not stable, beta or alpha", at, v)
					}
				}
			}
			if e.Cause != "" || e.Category != "" {
				return nil, fmt.Errorf("%s: a pass has no cause or category", at)
			}
		case Refused:
			if e.Cause == "" {
				return nil, fmt.Errorf("%s: cause: required for %s", at, Refused)
			}
			if e.Category != "" || len(e.Results) > 0 || len(e.Flags) > 0 {
				return nil, fmt.Errorf("%s: a refusal has no category, results or flags", at)
			}
		case Skip:
			if _, ok := SkipCategories[e.Category]; !ok {
				return nil, fmt.Errorf("%s: category: %q is not one of %s", at, e.Category, categoryNames())
			}
			if e.Reason == "" {
				return nil, fmt.Errorf("%s: reason: required for %s", at, Skip)
			}
			if e.Cause != "" || len(e.Results) > 0 || len(e.Flags) > 0 {
				return nil, fmt.Errorf("%s: a skip has no cause, results or flags", at)
			}
		default:
			return nil, fmt.Errorf("%s: expect: %q is not %s, %s or %s", at, e.Expect, Pass, Refused, Skip)
		}
		out[e.File] = e
	}
	return out, nil
}

func categoryNames() string {
	var names []string
	for k := range SkipCategories {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Coverage compares the files of the corpus with the list: a file the list does not mark
// would be skipped silently, and an entry without a file means the list is stale.
func Coverage(files []string, list map[string]Expectation) (unlisted, stale []string) {
	present := map[string]bool{}
	for _, f := range files {
		present[f] = true
		if _, ok := list[f]; !ok {
			unlisted = append(unlisted, f)
		}
	}
	for f := range list {
		if !present[f] {
			stale = append(stale, f)
		}
	}
	sort.Strings(stale)
	return unlisted, stale
}

// Load reads one example (path relative to dir) ready to render or run: a TaskRun
// example (under taskruns/) has its TaskRuns lifted into PipelineRuns.
func Load(dir, file string) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(file)))
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(file, "taskruns/") {
		return raw, nil
	}
	return Lift(file, raw)
}

// Lift rewrites every tekton.dev/v1 TaskRun of a multi-document YAML file as a
// PipelineRun whose inline pipelineSpec has one task: the TaskRun's taskRef or taskSpec,
// its params (through pipeline params of the same names for a taskRef, as values for a
// taskSpec) and workspaces passed through under the same names, its retries and
// timeout; the TaskRun's service account and pod template become the PipelineRun's
// taskRunTemplate, and its stepSpecs, sidecarSpecs and computeResources the task's
// taskRunSpecs entry. Other documents are kept as they are.
func Lift(name string, data []byte) ([]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out bytes.Buffer
	for i := 0; ; i++ {
		chunk, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(bytes.TrimSpace(chunk)) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(chunk, &tm); err != nil {
			return nil, fmt.Errorf("%s#%d: %w", name, i, err)
		}
		if tm.APIVersion == "tekton.dev/v1" && tm.Kind == "TaskRun" {
			var tr v1.TaskRun
			if err := yaml.UnmarshalStrict(chunk, &tr); err != nil {
				return nil, fmt.Errorf("%s#%d: TaskRun: %w", name, i, err)
			}
			pr, err := LiftTaskRun(&tr)
			if err != nil {
				return nil, fmt.Errorf("%s#%d: TaskRun %s: %w", name, i, tr.Name+tr.GenerateName, err)
			}
			if chunk, err = yaml.Marshal(pr); err != nil {
				return nil, fmt.Errorf("%s#%d: %w", name, i, err)
			}
		}
		out.WriteString("---\n")
		out.Write(bytes.TrimLeft(chunk, "\n"))
		if !bytes.HasSuffix(chunk, []byte("\n")) {
			out.WriteString("\n")
		}
	}
}

// LiftTaskRun is the one-task PipelineRun that runs what tr runs.
func LiftTaskRun(tr *v1.TaskRun) (*v1.PipelineRun, error) {
	s := tr.Spec
	if (s.TaskRef == nil) == (s.TaskSpec == nil) {
		return nil, errors.New("spec: exactly one of taskRef and taskSpec is needed")
	}
	task := taskName(tr.ObjectMeta)
	pt := v1.PipelineTask{Name: task, Retries: s.Retries, Timeout: s.Timeout}
	if s.TaskRef != nil {
		ref := s.TaskRef.DeepCopy()
		// A TaskRun accepts any spelling of kind Task; in a pipeline task a kind
		// other than Task or ClusterTask would make it a custom task.
		if strings.EqualFold(string(ref.Kind), string(v1.NamespacedTaskKind)) {
			ref.Kind = v1.NamespacedTaskKind
		}
		pt.TaskRef = ref
	} else {
		pt.TaskSpec = &v1.EmbeddedTask{TaskSpec: *s.TaskSpec.DeepCopy()}
	}
	spec := &v1.PipelineSpec{Tasks: []v1.PipelineTask{pt}}
	var runParams v1.Params
	for _, p := range s.Params {
		if s.TaskSpec != nil {
			// An inline taskSpec gets the TaskRun's values as they are. Passed through a
			// pipeline param of the same name, Tekton would substitute the value into the
			// inline taskSpec (propagated params) before the Task's defaults merge into
			// it, and an object with some keys would lose the ones the Task's default
			// gives, which a TaskRun keeps (taskruns/stepaction-params.yaml).
			spec.Tasks[0].Params = append(spec.Tasks[0].Params, *p.DeepCopy())
			continue
		}
		runParams = append(runParams, p)
		ps := v1.ParamSpec{Name: p.Name, Type: p.Value.Type}
		ref := fmt.Sprintf("$(params.%s)", p.Name)
		switch p.Value.Type {
		case v1.ParamTypeArray:
			ref = fmt.Sprintf("$(params.%s[*])", p.Name)
		case v1.ParamTypeObject:
			ref = fmt.Sprintf("$(params.%s[*])", p.Name)
			ps.Properties = map[string]v1.PropertySpec{}
			for k := range p.Value.ObjectVal {
				ps.Properties[k] = v1.PropertySpec{Type: v1.ParamTypeString}
			}
		}
		spec.Params = append(spec.Params, ps)
		spec.Tasks[0].Params = append(spec.Tasks[0].Params, v1.Param{Name: p.Name, Value: *v1.NewStructuredValues(ref)})
	}
	for _, w := range s.Workspaces {
		spec.Workspaces = append(spec.Workspaces, v1.PipelineWorkspaceDeclaration{Name: w.Name})
		spec.Tasks[0].Workspaces = append(spec.Tasks[0].Workspaces, v1.WorkspacePipelineTaskBinding{Name: w.Name, Workspace: w.Name})
	}
	pr := &v1.PipelineRun{
		TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{
			Name: tr.Name, GenerateName: tr.GenerateName, Namespace: tr.Namespace,
			Labels: tr.Labels, Annotations: tr.Annotations,
		},
		Spec: v1.PipelineRunSpec{
			PipelineSpec: spec,
			Params:       runParams,
			Workspaces:   s.Workspaces,
			TaskRunTemplate: v1.PipelineTaskRunTemplate{
				ServiceAccountName: s.ServiceAccountName,
				PodTemplate:        s.PodTemplate,
			},
		},
	}
	// Without a timeout of its own a PipelineRun gets Tekton's default, which a longer
	// (or disabled, 0) task timeout must not be cut short by.
	if s.Timeout != nil {
		pr.Spec.Timeouts = &v1.TimeoutFields{Pipeline: s.Timeout}
	}
	if len(s.StepSpecs) > 0 || len(s.SidecarSpecs) > 0 || s.ComputeResources != nil {
		pr.Spec.TaskRunSpecs = []v1.PipelineTaskRunSpec{{
			PipelineTaskName: task,
			StepSpecs:        s.StepSpecs,
			SidecarSpecs:     s.SidecarSpecs,
			ComputeResources: s.ComputeResources,
		}}
	}
	return pr, nil
}

// taskName names the one pipeline task after the TaskRun, when that is a valid name.
func taskName(m metav1.ObjectMeta) string {
	n := strings.TrimSuffix(m.Name+m.GenerateName, "-")
	if n == "" || len(validation.IsDNS1123Label(n)) > 0 {
		return "task"
	}
	return n
}
