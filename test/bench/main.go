// Command bench compares, on one cluster, the wall time of the same small Pipelines run
// through PipelineInPod (a CustomRun with an inline pipelineSpec: one pod) and through
// Tekton's own PipelineRun controller (a plain PipelineRun: one pod per task), and the
// floor: one plain Pod whose single container does the same echos.
//
//	make bench    # = hack/with-cluster.sh go run ./test/bench
//
// Scenarios: (A) five sequential tasks of one `echo` step; (C) five parallel tasks and a
// fan-in task; (D) the floor, one Pod, one container, five echos. Every variant runs once
// to warm up and then -runs times, interleaved (A-PipelineInPod, A-Tekton, C-..., D, then
// again), each run in its own namespace, deleted (and waited for) before the next run.
//
// Wall time is measured from just before the Create call to the moment a watch, opened
// before the Create, delivers the object in its end state:
//   - PipelineInPod: the CustomRun's Succeeded condition True;
//   - Tekton: the PipelineRun's Succeeded condition True;
//   - floor: the container's terminated state visible in the API, and Pod phase Succeeded.
//
// It prints the median of each and the ratios PipelineInPod/Tekton and PipelineInPod/floor
// (floor = Pod phase Succeeded, the like-for-like end point; the ratio against the
// container's terminated state is printed too).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

var (
	kubeconfig = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster")
	runs       = flag.Int("runs", 5, "measured runs of each variant (after one warm-up)")
	image      = flag.String("image", "docker.io/library/busybox:1.37.0", "the image of every step (a pinned tag; the local cluster's registry serves it)")
	runLimit   = flag.Duration("timeout", 5*time.Minute, "how long one run may take")
	only       = flag.String("only", "", "comma-separated variants to run (A-pip,A-tekton,C-pip,C-tekton,D); default all")
)

// sample is one measured run: the time to its end point(s).
type sample struct {
	end      time.Duration // Succeeded (CustomRun, PipelineRun) or Pod phase Succeeded (floor)
	term     time.Duration // floor only: the container's terminated state
	busyPods int           // running pods in other namespaces when the run started
}

type variant struct {
	name string
	run  func(ctx context.Context, c *cluster.Clients, ns string) (sample, error)
}

func main() {
	flag.Parse()
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "bench: KUBECONFIG is not set; run `make bench` (hack/with-cluster.sh brings up the local cluster)")
		os.Exit(2)
	}
	c, err := cluster.Connect(*kubeconfig)
	if err != nil {
		fatal(err)
	}
	ctx := context.Background()

	variants := []variant{
		{"A-pip", func(ctx context.Context, c *cluster.Clients, ns string) (sample, error) {
			return runCustomRun(ctx, c, ns, sequential())
		}},
		{"A-tekton", func(ctx context.Context, c *cluster.Clients, ns string) (sample, error) {
			return runPipelineRun(ctx, c, ns, sequential())
		}},
		{"C-pip", func(ctx context.Context, c *cluster.Clients, ns string) (sample, error) {
			return runCustomRun(ctx, c, ns, fanIn())
		}},
		{"C-tekton", func(ctx context.Context, c *cluster.Clients, ns string) (sample, error) {
			return runPipelineRun(ctx, c, ns, fanIn())
		}},
		{"D", runFloor},
	}
	if *only != "" {
		want := map[string]bool{}
		for _, v := range strings.Split(*only, ",") {
			want[strings.TrimSpace(v)] = true
		}
		var kept []variant
		for _, v := range variants {
			if want[v.name] {
				kept = append(kept, v)
			}
		}
		variants = kept
	}

	results := map[string][]sample{}
	suffix := fmt.Sprintf("%04d", rand.Intn(10000)) //nolint:gosec // a name suffix, not a secret
	for i := 0; i <= *runs; i++ {
		for _, v := range variants {
			ns := fmt.Sprintf("bench-%s-%s-%d", strings.ToLower(v.name), suffix, i)
			s, err := measure(ctx, c, ns, v)
			label := fmt.Sprintf("run %d", i)
			if i == 0 {
				label = "warm-up"
			}
			if err != nil {
				fatal(fmt.Errorf("%s %s (namespace %s): %w", v.name, label, ns, err))
			}
			extra := ""
			if v.name == "D" {
				extra = fmt.Sprintf(" (container terminated %.2fs)", s.term.Seconds())
			}
			fmt.Fprintf(os.Stderr, "bench: %-8s %-7s %6.2fs%s; running pods elsewhere: %d\n", v.name, label, s.end.Seconds(), extra, s.busyPods)
			if i > 0 {
				results[v.name] = append(results[v.name], s)
			}
		}
	}
	report(results)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// measure runs one variant in a fresh namespace and deletes the namespace afterwards,
// waiting until it is gone so that cleaning up never overlaps the next measurement.
func measure(ctx context.Context, c *cluster.Clients, ns string, v variant) (sample, error) {
	created, err := c.CreateNamespace(ctx, ns)
	if created {
		defer deleteNamespace(c, ns)
	}
	if err != nil {
		return sample{}, err
	}
	busy := runningPodsElsewhere(ctx, c, ns)
	rctx, cancel := context.WithTimeout(ctx, *runLimit)
	defer cancel()
	s, err := v.run(rctx, c, ns)
	s.busyPods = busy
	return s, err
}

func deleteNamespace(c *cluster.Clients, ns string) {
	ctx := context.Background()
	if err := c.DeleteNamespace(ctx, ns); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return
	}
	_, _ = cluster.Poll(ctx, 2*time.Minute, "namespace "+ns+" to be gone", func(ctx context.Context) (bool, string) {
		_, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

func runningPodsElsewhere(ctx context.Context, c *cluster.Clients, ns string) int {
	pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Running"})
	if err != nil {
		return -1
	}
	n := 0
	for _, p := range pods.Items {
		if p.Namespace != ns {
			n++
		}
	}
	return n
}

// The pipelines.

func echoTask(name, text string, runAfter ...string) v1.PipelineTask {
	return v1.PipelineTask{
		Name:     name,
		RunAfter: runAfter,
		TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{
			Name: "echo", Image: *image, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"echo", text},
		}}}},
	}
}

// sequential is scenario A: five tasks, one after the other, each one `echo` step.
func sequential() *v1.PipelineSpec {
	spec := &v1.PipelineSpec{}
	for i := 1; i <= 5; i++ {
		var after []string
		if i > 1 {
			after = []string{fmt.Sprintf("t%d", i-1)}
		}
		spec.Tasks = append(spec.Tasks, echoTask(fmt.Sprintf("t%d", i), fmt.Sprintf("task %d", i), after...))
	}
	return spec
}

// fanIn is scenario C: five parallel tasks and a task after all of them.
func fanIn() *v1.PipelineSpec {
	spec := &v1.PipelineSpec{}
	var all []string
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("p%d", i)
		all = append(all, name)
		spec.Tasks = append(spec.Tasks, echoTask(name, fmt.Sprintf("parallel %d", i)))
	}
	spec.Tasks = append(spec.Tasks, echoTask("join", "fan-in", all...))
	return spec
}

// The variants.

// runCustomRun runs the pipeline through PipelineInPod: a CustomRun whose customSpec
// carries the pipelineSpec. End point: the CustomRun's Succeeded condition True.
func runCustomRun(ctx context.Context, c *cluster.Clients, ns string, spec *v1.PipelineSpec) (sample, error) {
	raw, err := json.Marshal(map[string]any{"pipelineSpec": spec})
	if err != nil {
		return sample{}, err
	}
	cr := &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
		Spec: v1beta1.CustomRunSpec{
			CustomSpec: &v1beta1.EmbeddedCustomRunSpec{Spec: runtime.RawExtension{Raw: raw}},
		},
	}
	cr.Spec.CustomSpec.APIVersion, cr.Spec.CustomSpec.Kind = v1alpha1.APIVersion, v1alpha1.Kind
	w, err := c.Tekton.TektonV1beta1().CustomRuns(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return sample{}, err
	}
	defer w.Stop()
	start := time.Now()
	if _, err := c.CreateCustomRun(ctx, ns, cr); err != nil {
		return sample{}, err
	}
	end, err := until(ctx, w, func(o runtime.Object) (bool, error) {
		got, ok := o.(*v1beta1.CustomRun)
		if !ok {
			return false, nil
		}
		return succeeded(got.Status.GetCondition(apis.ConditionSucceeded), "CustomRun")
	})
	return sample{end: end.Sub(start)}, err
}

// runPipelineRun runs the pipeline through Tekton's PipelineRun controller. End point:
// the PipelineRun's Succeeded condition True.
func runPipelineRun(ctx context.Context, c *cluster.Clients, ns string, spec *v1.PipelineSpec) (sample, error) {
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
		Spec: v1.PipelineRunSpec{
			PipelineSpec:    spec,
			TaskRunTemplate: v1.PipelineTaskRunTemplate{ServiceAccountName: cluster.DefaultServiceAccount},
		},
	}
	w, err := c.Tekton.TektonV1().PipelineRuns(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return sample{}, err
	}
	defer w.Stop()
	start := time.Now()
	if _, err := c.Tekton.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		return sample{}, err
	}
	end, err := until(ctx, w, func(o runtime.Object) (bool, error) {
		got, ok := o.(*v1.PipelineRun)
		if !ok {
			return false, nil
		}
		return succeeded(got.Status.GetCondition(apis.ConditionSucceeded), "PipelineRun")
	})
	return sample{end: end.Sub(start)}, err
}

// runFloor runs one plain Pod whose single container does the five echos. End points:
// the container's terminated state, and the Pod phase Succeeded.
func runFloor(ctx context.Context, c *cluster.Clients, ns string) (sample, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "echo", Image: *image, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sh", "-c", "echo task 1; echo task 2; echo task 3; echo task 4; echo task 5"},
			}},
		},
	}
	w, err := c.Kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return sample{}, err
	}
	defer w.Stop()
	start := time.Now()
	if _, err := c.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return sample{}, err
	}
	var term time.Time
	end, err := until(ctx, w, func(o runtime.Object) (bool, error) {
		p, ok := o.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Terminated != nil && term.IsZero() {
				term = time.Now()
			}
		}
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			return true, nil
		case corev1.PodFailed:
			return false, fmt.Errorf("pod failed: %s", p.Status.Message)
		}
		return false, nil
	})
	if term.IsZero() {
		term = end
	}
	return sample{end: end.Sub(start), term: term.Sub(start)}, err
}

// until reads the watch until done says so, and returns when that event arrived.
func until(ctx context.Context, w watch.Interface, done func(runtime.Object) (bool, error)) (time.Time, error) {
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("not done: %w", ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				return time.Time{}, fmt.Errorf("the watch closed")
			}
			at := time.Now()
			if ev.Type == watch.Error {
				return time.Time{}, fmt.Errorf("watch error: %w", apierrors.FromObject(ev.Object))
			}
			ok, err := done(ev.Object)
			if err != nil || ok {
				return at, err
			}
		}
	}
}

func succeeded(c *apis.Condition, kind string) (bool, error) {
	if c == nil || c.IsUnknown() {
		return false, nil
	}
	if c.IsFalse() {
		return false, fmt.Errorf("%s failed: %s: %s", kind, c.Reason, c.Message)
	}
	return true, nil
}

// The report.

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ends(ss []sample, term bool) []time.Duration {
	var out []time.Duration
	for _, s := range ss {
		if term {
			out = append(out, s.term)
		} else {
			out = append(out, s.end)
		}
	}
	return out
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a.Seconds()/b.Seconds())
}

func report(results map[string][]sample) {
	floorEnd, floorTerm := median(ends(results["D"], false)), median(ends(results["D"], true))
	n := 0
	for _, ss := range results {
		if len(ss) > n {
			n = len(ss)
		}
	}
	fmt.Printf("\nbench: median wall time of %d runs each (after 1 warm-up), from just before Create to the end point seen by a watch\n\n", n)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tPipelineInPod\tTekton\tPiP/Tekton\tPiP/floor\tPiP/floor(terminated)")
	for _, sc := range []struct{ key, name string }{{"A", "A  5 sequential tasks, 1 echo step each"}, {"C", "C  5 parallel tasks + 1 fan-in task"}} {
		pip, tek := median(ends(results[sc.key+"-pip"], false)), median(ends(results[sc.key+"-tekton"], false))
		if pip == 0 && tek == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sc.name, secs(pip), secs(tek), ratio(pip, tek), ratio(pip, floorEnd), ratio(pip, floorTerm))
	}
	tw.Flush()
	if floorEnd != 0 {
		fmt.Printf("D  floor: 1 Pod, 1 container, 5 echos: container terminated %s, Pod phase Succeeded %s\n", secs(floorTerm), secs(floorEnd))
	}
	fmt.Println(`
end points: PipelineInPod = the CustomRun's Succeeded condition True; Tekton = the PipelineRun's Succeeded
condition True; floor = the container's terminated state visible in the API ("terminated") and the Pod's phase
Succeeded. PiP/floor divides by the floor's Pod phase Succeeded; PiP/floor(terminated) by its container's
terminated state.`)
	fmt.Println("\nsamples (s):")
	var keys []string
	for k := range results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var parts []string
		for _, s := range results[k] {
			if k == "D" {
				parts = append(parts, fmt.Sprintf("%.2f/%.2f", s.term.Seconds(), s.end.Seconds()))
			} else {
				parts = append(parts, fmt.Sprintf("%.2f", s.end.Seconds()))
			}
		}
		note := ""
		if k == "D" {
			note = " (terminated/Pod Succeeded)"
		}
		fmt.Printf("  %-9s %s%s\n", k, strings.Join(parts, " "), note)
	}
}
