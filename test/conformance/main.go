// Command conformance runs Tekton's own example runs (../shared/conformance) as
// PipelineInPod runs on a real cluster: for every file, in a fresh namespace, it
// applies the file's other documents, turns each PipelineRun into the equivalent
// CustomRun, and checks every run. Files under unsupported/ pass when every run fails
// fast (under -unsupported-within) with a message that names the cause.
//
//	go run ./test/conformance -dir ../shared/conformance [-run REGEXP]
//
// It prints one line per file and ends with `conformance: N passed, M failed`.
//
// The corpus names images as mirror.gcr.io/<name> (some by digest); a cluster without
// a registry serves them from local images, so every such reference is rewritten to
// mirror.gcr.io/<name>:local (hack/local-cluster builds those) unless -keep-images.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pipelineinpod/pipelineinpod/pkg/render"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"knative.dev/pkg/apis"
)

var (
	dir          = flag.String("dir", "../shared/conformance", "the corpus directory")
	only         = flag.String("run", "", "only files whose path matches this regexp")
	kubeconfig   = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	runTimeout   = flag.Duration("timeout", 4*time.Minute, "how long one open run may take")
	unsupWithin  = flag.Duration("unsupported-within", 30*time.Second, "how fast an unsupported run must fail")
	keepImages   = flag.Bool("keep-images", false, "do not rewrite mirror.gcr.io images to :local")
	keepNS       = flag.Bool("keep-namespaces", false, "leave each file's namespace behind")
	imageRef     = regexp.MustCompile(`(mirror\.gcr\.io/[a-z0-9._/-]+?)(@sha256:[0-9a-f]{64}|:[A-Za-z0-9._-]+)?(\s|"|'|$)`)
	unsupportedR = map[string]string{
		"pipelinerun-with-matrix-and-results.yaml":                         "fans out over a result",
		"pipelinerun-with-matrix-and-taskrunspecs-param-substitution.yaml": "podTemplate",
		"pipelinerun-with-matrix-emitting-results.yaml":                    "fans out over a result",
	}
)

func main() {
	flag.Parse()
	c, err := cluster.Connect(*kubeconfig)
	if err != nil {
		fatal(err)
	}
	var files []string
	err = filepath.WalkDir(*dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") && (*only == "" || regexp.MustCompile(*only).MatchString(p)) {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		fatal(err)
	}
	sort.Strings(files)
	passed, failed := 0, 0
	for i, f := range files {
		rel, _ := filepath.Rel(*dir, f)
		start := time.Now()
		err := runFile(context.Background(), c, f, rel, fmt.Sprintf("conf-%d-%d", time.Now().Unix()%100000, i))
		if err != nil {
			failed++
			fmt.Printf("FAIL %s (%.1fs): %s\n", rel, time.Since(start).Seconds(), render.OneLine(err))
		} else {
			passed++
			fmt.Printf("PASS %s (%.1fs)\n", rel, time.Since(start).Seconds())
		}
	}
	fmt.Printf("conformance: %d passed, %d failed\n", passed, failed)
	if failed > 0 || passed == 0 {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "conformance:", err)
	os.Exit(2)
}

func runFile(ctx context.Context, c *cluster.Clients, path, rel, ns string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !*keepImages {
		raw = imageRef.ReplaceAll(raw, []byte("${1}:local${3}"))
	}
	docs, err := render.Parse(rel, raw)
	if err != nil {
		return err
	}
	runs, err := render.Runs(docs)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("no PipelineRun in the file")
	}
	made, err := c.CreateNamespace(ctx, ns)
	if made && !*keepNS {
		defer c.DeleteNamespace(context.Background(), ns)
	}
	if err != nil {
		return err
	}
	for _, d := range docs {
		// Runs are not created as they are: each becomes a CustomRun below.
		if _, err := c.Create(ctx, ns, d.Object); err != nil {
			return fmt.Errorf("%s: %w", d.Source, err)
		}
	}
	unsupported := strings.HasPrefix(rel, "unsupported/")
	var created []*v1beta1.CustomRun
	for _, r := range runs {
		cr := r.CustomRun.DeepCopy()
		cr.UID, cr.ResourceVersion = "", ""
		if cr.GenerateName != "" {
			cr.Name = ""
		}
		got, err := c.CreateCustomRun(ctx, ns, cr)
		if err != nil {
			return fmt.Errorf("%s: creating the CustomRun for %s %s: %w", r.Source, r.Kind, r.Name, err)
		}
		created = append(created, got)
	}
	limit := *runTimeout
	if unsupported {
		limit = *unsupWithin
	}
	var problems []string
	for i, cr := range created {
		done, took, err := c.WaitCustomRunDone(ctx, ns, cr.Name, limit)
		if err != nil {
			problems = append(problems, fmt.Sprintf("run %d (%s): %v%s", i+1, cr.Name, err, failedTasks(ctx, c, ns, cr.Name)))
			continue
		}
		cond := done.Status.GetCondition(apis.ConditionSucceeded)
		switch {
		case unsupported:
			cause := unsupportedR[filepath.Base(rel)]
			if !cond.IsFalse() || (cause != "" && !strings.Contains(cond.Message, cause)) {
				problems = append(problems, fmt.Sprintf("run %d (%s): want a fast failure naming %q, got %s/%s %q after %s", i+1, cr.Name, cause, cond.Status, cond.Reason, cond.Message, took.Round(time.Millisecond)))
			}
		case !cond.IsTrue():
			problems = append(problems, fmt.Sprintf("run %d (%s): %s %s: %s%s", i+1, cr.Name, cond.Status, cond.Reason, cond.Message, failedTasks(ctx, c, ns, cr.Name)))
		default:
			if err := checkExpectations(rel, done); err != nil {
				problems = append(problems, fmt.Sprintf("run %d (%s): %v", i+1, cr.Name, err))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// failedTasks names the child TaskRuns that did not succeed, to make a failure readable.
func failedTasks(ctx context.Context, c *cluster.Clients, ns, cr string) string {
	trs, err := c.ChildTaskRuns(ctx, ns, cr)
	if err != nil {
		return ""
	}
	var b bytes.Buffer
	for _, tr := range trs {
		if cond := tr.Status.GetCondition(apis.ConditionSucceeded); cond == nil || !cond.IsTrue() {
			fmt.Fprintf(&b, "; TaskRun %s: %s", tr.Name, cluster.ConditionString(cond))
		}
	}
	return b.String()
}

// The values expectations.tsv asks a judge to check, where the example only echoes them.
var expectedResults = map[string]map[string]string{
	"open/examples/v1/pipelineruns/pipelinerun-results.yaml":            {"sum": "22", "partial-sum": "12", "all-sum": "22-12"},
	"open/examples/v1/pipelineruns/pipelinerun-with-final-results.yaml": {"task-result": "2", "finally-result": "484"},
}

func checkExpectations(rel string, cr *v1beta1.CustomRun) error {
	want := expectedResults[rel]
	got := map[string]string{}
	for _, r := range cr.Status.Results {
		got[r.Name] = r.Value
	}
	for k, v := range want {
		if strings.TrimSpace(got[k]) != v {
			return fmt.Errorf("result %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	return nil
}
