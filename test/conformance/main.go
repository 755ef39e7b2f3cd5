// Command conformance runs Tekton's own example runs as PipelineInPod runs on a real
// cluster: for every file, in a fresh namespace, it applies the file's other documents,
// turns each PipelineRun into the equivalent CustomRun, and checks every run.
//
// By default the corpus is Tekton's examples/v1 from the github.com/tektoncd/pipeline
// module go.mod pins, every TaskRun example lifted into a one-task PipelineRun, each
// file marked in corpus/expectations.yaml: pass (every run succeeds, with the listed
// results), refused (every run fails within -unsupported-within, naming the cause) or
// skip (printed with its reason). A file of the module the list does not mark fails.
//
//	go run ./test/conformance [-run REGEXP]
//	go run ./test/conformance -dir DIR [-run REGEXP]
//
// -dir runs a directory instead: every YAML file under it must pass, except those under
// unsupported/, which must be refused.
//
// It prints one line per file and ends with
// `conformance: N passed, M refused as expected, K skipped (listed), F failed`.
//
// The examples name images as mirror.gcr.io/<name> (some by digest); a cluster without
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

	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/render"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
	"github.com/pipelineinpod/pipelineinpod/test/conformance/corpus"
)

var (
	dir          = flag.String("dir", "", "run this directory instead of Tekton's examples from the pinned module (files under unsupported/ must be refused)")
	only         = flag.String("run", "", "only files whose path matches this regexp")
	kubeconfig   = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	tektonNS     = flag.String("tekton-namespace", "tekton-pipelines", "the namespace of Tekton's feature-flags ConfigMap")
	runTimeout   = flag.Duration("timeout", 4*time.Minute, "how long one run may take")
	unsupWithin  = flag.Duration("unsupported-within", 30*time.Second, "how fast a refused run must fail")
	keepImages   = flag.Bool("keep-images", false, "do not rewrite mirror.gcr.io images to :local")
	keepNS       = flag.Bool("keep-namespaces", false, "leave each file's namespace behind")
	imageRef     = regexp.MustCompile(`(mirror\.gcr\.io/[a-z0-9._/-]+?)(@sha256:[0-9a-f]{64}|:[A-Za-z0-9._-]+)?(\s|"|'|$)`)
	unsupportedR = map[string]string{
		"pipelinerun-with-matrix-and-results.yaml":                         "fans out over a result",
		"pipelinerun-with-matrix-and-taskrunspecs-param-substitution.yaml": "podTemplate",
		"pipelinerun-with-matrix-emitting-results.yaml":                    "fans out over a result",
	}
)

// expectation is what every run of one file must show.
type expectation struct {
	refused bool
	cause   string            // refused: a phrase of the failure message
	results map[string]string // pass: CustomRun results
}

// entry is one file to run, or to report without running.
type entry struct {
	name   string // as printed
	load   func() ([]byte, error)
	expect expectation
	skip   string // why it is not run
	fail   string // why it fails without running
}

// tally counts outcomes for the summary line.
type tally struct {
	passed, refused, skipped, failed int
	skips                            map[string]int
}

func main() {
	flag.Parse()
	c, err := cluster.Connect(*kubeconfig)
	if err != nil {
		fatal(err)
	}
	var entries []entry
	if *dir != "" {
		entries, err = dirEntries(*dir)
	} else {
		entries, err = moduleEntries(context.Background(), c)
	}
	if err != nil {
		fatal(err)
	}
	var filter *regexp.Regexp
	if *only != "" {
		if filter, err = regexp.Compile(*only); err != nil {
			fatal(err)
		}
	}
	t := tally{skips: map[string]int{}}
	for i, e := range entries {
		if filter != nil && !filter.MatchString(e.name) {
			continue
		}
		switch {
		case e.fail != "":
			t.failed++
			fmt.Printf("FAIL %s: %s\n", e.name, e.fail)
			continue
		case e.skip != "":
			t.skipped++
			t.skips[strings.SplitN(e.skip, ":", 2)[0]]++
			fmt.Printf("SKIP %s: %s\n", e.name, e.skip)
			continue
		}
		start := time.Now()
		err := runFile(context.Background(), c, e, fmt.Sprintf("conf-%d-%d", time.Now().Unix()%100000, i))
		took := time.Since(start).Seconds()
		switch {
		case err != nil:
			t.failed++
			fmt.Printf("FAIL %s (%.1fs): %s\n", e.name, took, render.OneLine(err))
		case e.expect.refused:
			t.refused++
			fmt.Printf("REFUSED %s (%.1fs): as expected, naming %q\n", e.name, took, e.expect.cause)
		default:
			t.passed++
			fmt.Printf("PASS %s (%.1fs)\n", e.name, took)
		}
	}
	if len(t.skips) > 0 {
		var cats []string
		for k, n := range t.skips {
			cats = append(cats, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(cats)
		fmt.Printf("skipped, by reason: %s\n", strings.Join(cats, ", "))
	}
	fmt.Printf("conformance: %d passed, %d refused as expected, %d skipped (listed), %d failed\n", t.passed, t.refused, t.skipped, t.failed)
	if t.failed > 0 || t.passed+t.refused == 0 {
		os.Exit(1)
	}
}

// moduleEntries lists Tekton's examples from the pinned module with their marks. Flags
// an example needs that the cluster's Tekton does not set make it a skip, as Tekton's
// own e2e runs alpha examples only with alpha fields on.
func moduleEntries(ctx context.Context, c *cluster.Clients) ([]entry, error) {
	exdir, err := corpus.ExamplesDir()
	if err != nil {
		return nil, err
	}
	files, err := corpus.Files(exdir)
	if err != nil {
		return nil, err
	}
	list, err := corpus.Expectations()
	if err != nil {
		return nil, err
	}
	flags, err := clusterFeatureFlags(ctx, c)
	if err != nil {
		return nil, err
	}
	defaults := map[string]string{"enable-api-fields": config.DefaultEnableAPIFields}
	unlisted, stale := corpus.Coverage(files, list)
	var out []entry
	for _, f := range unlisted {
		out = append(out, entry{name: f, fail: fmt.Sprintf("not marked in %s: mark it pass, refused or skip (with a reason)", corpus.ExpectationsFile)})
	}
	for _, f := range stale {
		out = append(out, entry{name: f, fail: fmt.Sprintf("marked in %s but not in %s", corpus.ExpectationsFile, exdir)})
	}
	for _, f := range files {
		e, ok := list[f]
		if !ok {
			continue
		}

		en := entry{name: f, load: func() ([]byte, error) { return corpus.Load(exdir, f) }}
		switch e.Expect {
		case corpus.Skip:
			en.skip = fmt.Sprintf("%s: %s", e.Category, e.Reason)
		case corpus.Refused:
			en.expect = expectation{refused: true, cause: e.Cause}
		default:
			en.expect = expectation{results: e.Results}
			if missing := e.FlagsMissing(flags, defaults); len(missing) > 0 {
				en.skip = fmt.Sprintf("feature-flags: needs %s in %s/feature-flags", strings.Join(missing, ", "), *tektonNS)
			}
		}
		out = append(out, en)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// clusterFeatureFlags is the data of Tekton's feature-flags ConfigMap (none: defaults).
func clusterFeatureFlags(ctx context.Context, c *cluster.Clients) (map[string]string, error) {
	cm, err := c.Kube.CoreV1().ConfigMaps(*tektonNS).Get(ctx, config.GetFeatureFlagsConfigName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Tekton's feature flags: %w", err)
	}
	return cm.Data, nil
}

// dirEntries lists every YAML file under root: those under unsupported/ must be
// refused, the rest must pass.
func dirEntries(root string) ([]entry, error) {
	var out []entry
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		e := entry{name: rel, load: func() ([]byte, error) { return os.ReadFile(p) }, expect: expectation{results: dirResults[rel]}}
		if strings.HasPrefix(rel, "unsupported/") {
			e.expect = expectation{refused: true, cause: unsupportedR[filepath.Base(rel)]}
		}
		out = append(out, e)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, err
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "conformance:", err)
	os.Exit(2)
}

func runFile(ctx context.Context, c *cluster.Clients, e entry, ns string) error {
	rel := e.name
	raw, err := e.load()
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
		defer func() {
			// A namespace left behind does not change the file's verdict; say so and go on.
			if err := c.DeleteNamespace(context.Background(), ns); err != nil {
				fmt.Fprintln(os.Stderr, "conformance:", err)
			}
		}()
	}
	if err != nil {
		return err
	}
	unsupported := e.expect.refused
	for _, d := range docs {
		// Runs are not created as they are: each becomes a CustomRun below.
		if _, err := c.Create(ctx, ns, d.Object); err != nil {
			if unsupported && e.expect.cause != "" && strings.Contains(err.Error(), e.expect.cause) {
				return nil // refused already by the API server's admission (Tekton's webhook)
			}
			return fmt.Errorf("%s: %w", d.Source, err)
		}
	}
	var created []*v1beta1.CustomRun
	for _, r := range runs {
		cr := r.CustomRun.DeepCopy()
		cr.Namespace, cr.UID, cr.ResourceVersion = ns, "", ""
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
			cause := e.expect.cause
			if !cond.IsFalse() || (cause != "" && !strings.Contains(cond.Message, cause)) {
				problems = append(problems, fmt.Sprintf("run %d (%s): want a fast failure naming %q, got %s/%s %q after %s", i+1, cr.Name, cause, cond.Status, cond.Reason, cond.Message, took.Round(time.Millisecond)))
			}
		case !cond.IsTrue():
			problems = append(problems, fmt.Sprintf("run %d (%s): %s %s: %s%s", i+1, cr.Name, cond.Status, cond.Reason, cond.Message, failedTasks(ctx, c, ns, cr.Name)))
		default:
			if err := checkResults(e.expect.results, done); err != nil {
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
		cond := tr.Status.GetCondition(apis.ConditionSucceeded)
		if cond == nil || !cond.IsTrue() {
			fmt.Fprintf(&b, "; TaskRun %s: %s", tr.Name, cluster.ConditionString(cond))
		}
	}
	return b.String()
}

// dirResults are the results a -dir corpus laid out as open/examples/v1/... must show,
// for examples that only echo their values (the module corpus lists its own).
var dirResults = map[string]map[string]string{
	"open/examples/v1/pipelineruns/pipelinerun-results.yaml":            {"sum": "22", "partial-sum": "12", "all-sum": "22-12"},
	"open/examples/v1/pipelineruns/pipelinerun-with-final-results.yaml": {"task-result": "2", "finally-result": "484"},
}

func checkResults(want map[string]string, cr *v1beta1.CustomRun) error {
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
