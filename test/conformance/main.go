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

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/render"
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

type clients struct {
	kube   kubernetes.Interface
	tekton versioned.Interface
}

func main() {
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fatal(err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	c := clients{kube: kubernetes.NewForConfigOrDie(cfg), tekton: versioned.NewForConfigOrDie(cfg)}
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

func runFile(ctx context.Context, c clients, path, rel, ns string) error {
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
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if !*keepNS {
		defer func() { _ = c.kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) }() // best effort
	}
	if err := waitForDefaultSA(ctx, c, ns); err != nil {
		return err
	}
	for _, d := range docs {
		if err := apply(ctx, c, ns, d); err != nil {
			return fmt.Errorf("%s: %w", d.Source, err)
		}
	}
	unsupported := strings.HasPrefix(rel, "unsupported/")
	var created []*v1beta1.CustomRun
	for _, r := range runs {
		cr := r.CustomRun.DeepCopy()
		cr.Namespace, cr.UID, cr.ResourceVersion = ns, "", ""
		if cr.GenerateName != "" {
			cr.Name = ""
		}
		if cr.Spec.ServiceAccountName == "" {
			cr.Spec.ServiceAccountName = "default"
		}
		got, err := c.tekton.TektonV1beta1().CustomRuns(ns).Create(ctx, cr, metav1.CreateOptions{})
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
		done, took, err := wait(ctx, c, ns, cr.Name, limit)
		if err != nil {
			problems = append(problems, fmt.Sprintf("run %d (%s): %v", i+1, cr.Name, err))
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

func waitForDefaultSA(ctx context.Context, c clients, ns string) error {
	for range 100 {
		if _, err := c.kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("namespace %s has no default service account", ns)
}

func apply(ctx context.Context, c clients, ns string, d render.Document) error {
	obj := d.Object.DeepCopyObject()
	obj.(metav1.Object).SetNamespace(ns)
	opts := metav1.CreateOptions{}
	var err error
	switch o := obj.(type) {
	case *v1.Pipeline:
		_, err = c.tekton.TektonV1().Pipelines(ns).Create(ctx, o, opts)
	case *v1.Task:
		_, err = c.tekton.TektonV1().Tasks(ns).Create(ctx, o, opts)
	case *v1beta1.StepAction:
		_, err = c.tekton.TektonV1beta1().StepActions(ns).Create(ctx, o, opts)
	case *corev1.ConfigMap:
		_, err = c.kube.CoreV1().ConfigMaps(ns).Create(ctx, o, opts)
	case *corev1.Secret:
		_, err = c.kube.CoreV1().Secrets(ns).Create(ctx, o, opts)
	case *corev1.ServiceAccount:
		_, err = c.kube.CoreV1().ServiceAccounts(ns).Create(ctx, o, opts)
	case *corev1.PersistentVolumeClaim:
		_, err = c.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, o, opts)
	}
	return err
}

func wait(ctx context.Context, c clients, ns, name string, limit time.Duration) (*v1beta1.CustomRun, time.Duration, error) {
	start := time.Now()
	var last *v1beta1.CustomRun
	for time.Since(start) < limit {
		cr, err := c.tekton.TektonV1beta1().CustomRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = cr
			if cr.IsDone() {
				return cr, time.Since(start), nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	state := "no status"
	if last != nil {
		if cond := last.Status.GetCondition(apis.ConditionSucceeded); cond != nil {
			state = fmt.Sprintf("%s/%s %q", cond.Status, cond.Reason, cond.Message)
		}
	}
	return nil, 0, fmt.Errorf("not done after %s (%s)%s", limit, state, failedTasks(ctx, c, ns, name))
}

// failedTasks names the child TaskRuns that did not succeed, to make a failure readable.
func failedTasks(ctx context.Context, c clients, ns, cr string) string {
	trs, err := c.tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: "tekton.dev/customRun=" + cr})
	if err != nil {
		return ""
	}
	var b bytes.Buffer
	for _, tr := range trs.Items {
		cond := tr.Status.GetCondition(apis.ConditionSucceeded)
		if cond == nil || !cond.IsTrue() {
			state := "no status"
			if cond != nil {
				state = fmt.Sprintf("%s/%s %q", cond.Status, cond.Reason, cond.Message)
			}
			fmt.Fprintf(&b, "; TaskRun %s: %s", tr.Name, state)
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
