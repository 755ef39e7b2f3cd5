//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/render"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

// busybox is a real, pinned image; the local cluster's registry serves the same name.
const busybox = "docker.io/library/busybox:1.37.0"

var clients *cluster.Clients

func TestMain(m *testing.M) {
	kc := os.Getenv("KUBECONFIG")
	if kc == "" {
		fmt.Fprintln(os.Stderr, "e2e: KUBECONFIG is not set. Run `make e2e` (hack/with-cluster.sh brings up the local "+
			"cluster and starts the controller), or set KUBECONFIG to a cluster where Tekton Pipelines and PipelineInPod run.")
		os.Exit(2)
	}
	var err error
	if clients, err = cluster.Connect(kc); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: reading KUBECONFIG %s: %v\n", kc, err)
		os.Exit(2)
	}
	if _, err := clients.Kube.Discovery().ServerVersion(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the cluster of KUBECONFIG %s does not answer: %v\n", kc, err)
		os.Exit(2)
	}
	if _, err := clients.Tekton.TektonV1beta1().CustomRuns("default").List(context.Background(), metav1.ListOptions{Limit: 1}); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: Tekton's CustomRun API is not there (is Tekton Pipelines installed?): %v\n", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// env is one test's namespace.
type env struct {
	t   *testing.T
	ctx context.Context
	ns  string
}

var nsUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// newEnv creates a fresh namespace for the test. When the test ends it prints diagnostics
// if the test failed, then deletes the namespace (unless E2E_KEEP_NAMESPACES is set).
func newEnv(t *testing.T) *env {
	t.Helper()
	base := strings.Trim(nsUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = base[:40]
	}
	ns := fmt.Sprintf("e2e-%s-%05d", base, rand.Intn(100000))
	ctx, cancel := context.WithCancel(context.Background())
	// Registered first, so it runs last: the namespace's cleanup below may still use ctx.
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, ns: ns}
	made, err := clients.CreateNamespace(ctx, ns)
	if made {
		t.Logf("namespace %s", ns)
		t.Cleanup(func() {
			if t.Failed() {
				e.diagnose()
			}
			if os.Getenv("E2E_KEEP_NAMESPACES") == "" {
				if err := clients.DeleteNamespace(context.Background(), ns); err != nil {
					t.Log(err)
				}
			} else {
				t.Logf("keeping namespace %s (E2E_KEEP_NAMESPACES)", ns)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// poll calls f every cluster.PollInterval until it returns true, and fails the test with
// f's last description if that takes longer than timeout.
func (e *env) poll(timeout time.Duration, what string, f func() (bool, string)) time.Duration {
	e.t.Helper()
	took, err := cluster.Poll(e.ctx, timeout, what, func(context.Context) (bool, string) { return f() })
	if err != nil {
		e.t.Fatal(err)
	}
	return took
}

// examplePath is a file of the repository's examples/ directory.
func examplePath(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", name)
}

// applyExample creates the Pipelines, Tasks and other objects of an example file (not its
// runs) in the namespace and returns every document of the file.
func (e *env) applyExample(name string) []render.Document {
	e.t.Helper()
	docs, err := render.ReadFiles(examplePath(name))
	if err != nil {
		e.t.Fatalf("reading example %s: %v", name, err)
	}
	for _, d := range docs {
		var err error
		switch o := d.Object.(type) {
		case *v1.Pipeline, *v1.Task:
			_, err = clients.Create(e.ctx, e.ns, o)
		case *v1.PipelineRun, *v1beta1.CustomRun:
			// runs are created by the tests
		default:
			err = fmt.Errorf("the e2e tests do not apply a %T", o)
		}
		if err != nil {
			e.t.Fatalf("%s: %v", d.Source, err)
		}
	}
	return docs
}

// createPipelineRun creates the example's one PipelineRun in the namespace.
func (e *env) createPipelineRun(docs []render.Document) *v1.PipelineRun {
	e.t.Helper()
	for _, d := range docs {
		if pr, ok := d.Object.(*v1.PipelineRun); ok {
			pr = pr.DeepCopy()
			pr.Namespace = e.ns
			got, err := clients.Tekton.TektonV1().PipelineRuns(e.ns).Create(e.ctx, pr, metav1.CreateOptions{})
			if err != nil {
				e.t.Fatalf("creating PipelineRun: %v", err)
			}
			e.t.Logf("PipelineRun %s", got.Name)
			return got
		}
	}
	e.t.Fatalf("no PipelineRun in the documents")
	return nil
}

// customRunOf is the one CustomRun Tekton made for a pipeline task of PipelineRun pr.
func (e *env) customRunOf(pr *v1.PipelineRun) *v1beta1.CustomRun {
	e.t.Helper()
	crs, err := clients.Tekton.TektonV1beta1().CustomRuns(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: pipeline.PipelineRunLabelKey + "=" + pr.Name})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(crs.Items) != 1 {
		e.t.Fatalf("want one CustomRun of PipelineRun %s, got %d", pr.Name, len(crs.Items))
	}
	return &crs.Items[0]
}

// exampleCustomRun is the example's one CustomRun.
func exampleCustomRun(t *testing.T, docs []render.Document) *v1beta1.CustomRun {
	t.Helper()
	for _, d := range docs {
		if cr, ok := d.Object.(*v1beta1.CustomRun); ok {
			return cr.DeepCopy()
		}
	}
	t.Fatalf("no CustomRun in the documents")
	return nil
}

func (e *env) createCustomRun(cr *v1beta1.CustomRun) *v1beta1.CustomRun {
	e.t.Helper()
	got, err := clients.CreateCustomRun(e.ctx, e.ns, cr)
	if err != nil {
		e.t.Fatalf("creating CustomRun: %v", err)
	}
	e.t.Logf("CustomRun %s", got.Name)
	return got
}

// inlineCustomRun is a CustomRun of PipelineInPod with customSpec.spec = spec (a
// PipelineInPod spec: pipelineSpec, pipelineRef, timeouts, ...), written as YAML.
func inlineCustomRun(t *testing.T, generateName, specYAML string, params ...v1beta1.Param) *v1beta1.CustomRun {
	t.Helper()
	raw, err := yamlToJSON(specYAML)
	if err != nil {
		t.Fatalf("the inline spec: %v", err)
	}
	cr := &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: generateName},
		Spec: v1beta1.CustomRunSpec{
			CustomSpec: &v1beta1.EmbeddedCustomRunSpec{Spec: runtimeRaw(raw)},
			Params:     params,
		},
	}
	cr.Spec.CustomSpec.APIVersion = v1alpha1.APIVersion
	cr.Spec.CustomSpec.Kind = v1alpha1.Kind
	return cr
}

func stringParam(name, value string) v1beta1.Param {
	return v1beta1.Param{Name: name, Value: *v1beta1.NewStructuredValues(value)}
}

// waitCustomRunDone waits until the CustomRun is done and returns it with the time waited.
func (e *env) waitCustomRunDone(name string, timeout time.Duration) (*v1beta1.CustomRun, time.Duration) {
	e.t.Helper()
	cr, took, err := clients.WaitCustomRunDone(e.ctx, e.ns, name, timeout)
	if err != nil {
		e.t.Fatal(err)
	}
	return cr, took
}

func (e *env) waitPipelineRunDone(name string, timeout time.Duration) *v1.PipelineRun {
	e.t.Helper()
	var pr *v1.PipelineRun
	e.poll(timeout, "PipelineRun "+name+" to finish", func() (bool, string) {
		got, err := clients.Tekton.TektonV1().PipelineRuns(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pr = got
		return got.IsDone(), cluster.ConditionString(got.Status.GetCondition(apis.ConditionSucceeded))
	})
	return pr
}

// childTaskRuns lists the CustomRun's child TaskRuns by pipeline task name.
func (e *env) childTaskRuns(crName string) map[string]*v1.TaskRun {
	e.t.Helper()
	list, err := clients.ChildTaskRuns(e.ctx, e.ns, crName)
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]*v1.TaskRun{}
	for i := range list {
		tr := &list[i]
		pt := tr.Labels[pipeline.PipelineTaskLabelKey]
		if _, dup := m[pt]; dup {
			e.t.Errorf("two TaskRuns for pipeline task %q: %s and %s", pt, m[pt].Name, tr.Name)
		}
		m[pt] = tr
	}
	return m
}

// podsOf lists the pods labelled with the CustomRun's name.
func (e *env) podsOf(crName string) []corev1.Pod {
	e.t.Helper()
	list, err := clients.Kube.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: pipeline.CustomRunKey + "=" + crName})
	if err != nil {
		e.t.Fatalf("listing the pods of %s: %v", crName, err)
	}
	return list.Items
}

// onePod checks that exactly one pod ran the CustomRun and returns it.
func (e *env) onePod(crName string) corev1.Pod {
	e.t.Helper()
	pods := e.podsOf(crName)
	if len(pods) != 1 {
		var names []string
		for _, p := range pods {
			names = append(names, p.Name)
		}
		e.t.Fatalf("CustomRun %s: want exactly one pod labelled %s=%s, got %d: %v", crName, pipeline.CustomRunKey, crName, len(pods), names)
	}
	return pods[0]
}

func (e *env) containerLog(pod, container string) string {
	e.t.Helper()
	log, err := clients.ContainerLog(e.ctx, e.ns, pod, container, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return log
}

// tkn runs the tkn CLI (on PATH after hack/local-cluster/env.sh, or in $PIP_CLUSTER_DIR/bin).
func tkn(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("tkn")
	if err != nil {
		bin = filepath.Join(clusterDir(), "bin", "tkn")
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("tkn is neither on PATH nor at %s (hack/local-cluster/build-tools.sh builds it)", bin)
		}
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tkn %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func clusterDir() string {
	if d := os.Getenv("PIP_CLUSTER_DIR"); d != "" {
		return d
	}
	return "/var/tmp/pipelineinpod-cluster"
}

func crResults(cr *v1beta1.CustomRun) map[string]string {
	m := map[string]string{}
	for _, r := range cr.Status.Results {
		m[r.Name] = r.Value
	}
	return m
}

func trResults(tr *v1.TaskRun) map[string]string {
	m := map[string]string{}
	for _, r := range tr.Status.Results {
		m[r.Name] = r.Value.StringVal
	}
	return m
}

// diagnose prints what a failed test needs to be understood: the runs, child TaskRuns and
// pods of the namespace, its events, and the controller log lines about the namespace.
func (e *env) diagnose() {
	t, ctx := e.t, context.Background()
	var b strings.Builder
	fmt.Fprintf(&b, "==== diagnostics for namespace %s ====\n", e.ns)
	if crs, err := clients.Tekton.TektonV1beta1().CustomRuns(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, cr := range crs.Items {
			fmt.Fprintf(&b, "CustomRun %s: spec.status=%q %s start=%v completion=%v\n  results=%v\n  extraFields=%s\n", cr.Name,
				cr.Spec.Status, cluster.ConditionString(cr.Status.GetCondition(apis.ConditionSucceeded)), cr.Status.StartTime,
				cr.Status.CompletionTime, crResults(&cr), string(cr.Status.ExtraFields.Raw))
		}
	}
	if prs, err := clients.Tekton.TektonV1().PipelineRuns(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, pr := range prs.Items {
			fmt.Fprintf(&b, "PipelineRun %s: %s\n", pr.Name, cluster.ConditionString(pr.Status.GetCondition(apis.ConditionSucceeded)))
			for _, c := range pr.Status.ChildReferences {
				fmt.Fprintf(&b, "  child %s %s (pipeline task %s)\n", c.Kind, c.Name, c.PipelineTaskName)
			}
		}
	}
	if trs, err := clients.Tekton.TektonV1().TaskRuns(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, tr := range trs.Items {
			fmt.Fprintf(&b, "TaskRun %s (task %s, customRun %s): spec.status=%q %s pod=%s start=%v completion=%v results=%v\n", tr.Name,
				tr.Labels[pipeline.PipelineTaskLabelKey], tr.Labels[pipeline.CustomRunKey], tr.Spec.Status,
				cluster.ConditionString(tr.Status.GetCondition(apis.ConditionSucceeded)), tr.Status.PodName, tr.Status.StartTime,
				tr.Status.CompletionTime, trResults(&tr))
			for _, s := range tr.Status.Steps {
				fmt.Fprintf(&b, "  step %s (%s): %s\n", s.Name, s.Container, containerState(s.ContainerState))
			}
		}
	}
	if pods, err := clients.Kube.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "Pod %s: phase=%s deleting=%v %s\n", p.Name, p.Status.Phase, p.DeletionTimestamp != nil, p.Status.Message)
			statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
			for _, s := range statuses {
				fmt.Fprintf(&b, "  container %s: %s\n", s.Name, containerState(s.State))
				if term := s.State.Terminated; term != nil && term.ExitCode != 0 {
					if log, err := clients.ContainerLog(ctx, e.ns, p.Name, s.Name, 15); err == nil {
						fmt.Fprintf(&b, "    log: %s\n", strings.ReplaceAll(strings.TrimSpace(log), "\n", "\n    log: "))
					}
				}
			}
		}
	}
	if evs, err := clients.Kube.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{}); err == nil {
		items := evs.Items
		if len(items) > 25 {
			items = items[len(items)-25:]
		}
		for _, ev := range items {
			fmt.Fprintf(&b, "Event %s %s/%s: %s %s\n", ev.Type, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Reason, ev.Message)
		}
	}
	b.WriteString(controllerLogTail(e.ns, 40))
	t.Log(b.String())
}

// controllerNamespace and controllerSelector find the controller config/ deploys.
const (
	controllerNamespace  = "pipelineinpod"
	controllerDeployment = "pipelineinpod-controller"
	controllerSelector   = "app.kubernetes.io/name=controller,app.kubernetes.io/part-of=pipelineinpod"
)

// controllerLog opens the controller's log: the in-cluster controller's pods' (config/'s
// Deployment, the default), else the host-run controller's file (PIP_CONTROLLER=host).
func controllerLog() (io.ReadCloser, string, error) {
	ctx := context.Background()
	pods, err := clients.Kube.CoreV1().Pods(controllerNamespace).List(ctx, metav1.ListOptions{LabelSelector: controllerSelector})
	if err == nil && len(pods.Items) > 0 {
		var all []byte
		var names []string
		for _, p := range pods.Items {
			b, err := clients.Kube.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: ptr.To(int64(5000))}).DoRaw(ctx)
			if err != nil {
				b = []byte(fmt.Sprintf("(log of pod %s: %v)\n", p.Name, err))
			}
			all = append(all, b...)
			names = append(names, "pod "+controllerNamespace+"/"+p.Name)
		}
		return io.NopCloser(bytes.NewReader(all)), strings.Join(names, ", "), nil
	}
	path := filepath.Join(clusterDir(), "run", "logs", "pipelineinpod-controller.log")
	f, err := os.Open(path)
	return f, path, err
}

// controllerLogTail returns the last lines of the controller's log that mention the
// namespace (or the last lines at all when none does).
func controllerLogTail(ns string, n int) string {
	f, path, err := controllerLog()
	if err != nil {
		return fmt.Sprintf("(no controller pod in %s, no controller log at %s)\n", controllerNamespace, path)
	}
	defer f.Close()
	var all, mine []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		all = append(all, line)
		if len(all) > 4*n {
			all = all[1:]
		}
		if strings.Contains(line, ns) {
			mine = append(mine, line)
			if len(mine) > n {
				mine = mine[1:]
			}
		}
	}
	lines, what := mine, "lines about "+ns
	if len(lines) == 0 {
		lines, what = all, "last lines"
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
	}
	return fmt.Sprintf("---- controller log %s (%s) ----\n%s\n", path, what, strings.Join(lines, "\n"))
}

func containerState(s corev1.ContainerState) string {
	switch {
	case s.Terminated != nil:
		return fmt.Sprintf("terminated %s exit=%d at %s %s", s.Terminated.Reason, s.Terminated.ExitCode,
			s.Terminated.FinishedAt.Format(time.RFC3339), strings.TrimSpace(s.Terminated.Message))
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.Format(time.RFC3339)
	case s.Waiting != nil:
		return fmt.Sprintf("waiting %s %s", s.Waiting.Reason, s.Waiting.Message)
	}
	return "no state"
}

func yamlToJSON(s string) ([]byte, error) { return yaml.YAMLToJSON([]byte(s)) }

func runtimeRaw(b []byte) k8sruntime.RawExtension { return k8sruntime.RawExtension{Raw: b} }

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
