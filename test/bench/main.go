// Command bench compares, on one cluster, the wall time and the machine's CPU of the same
// Pipelines run through PipelineInPod (a CustomRun with an inline pipelineSpec: one pod),
// through Tekton's own PipelineRun controller (one pod per task), and the floor: one
// plain Pod with as many containers as the Pipeline has tasks, each just `echo`. A
// fourth variant, PipelineInPod's pod alone, creates again the pod a PipelineInPod run
// of the same scenario created, as a plain Pod: no controller, no TaskRuns. It splits
// PipelineInPod's distance from the floor into what its pod costs the node (Tekton's
// entrypoint and volumes in every container) and what the controller adds.
//
//	make bench    # = hack/with-cluster.sh go run ./test/bench
//
// Scenarios (-scenarios): seq5, seq20, seq50 (N sequential tasks of one `echo` step),
// fan5 and fan20 (N parallel tasks and a join after all of them). Tekton runs the
// scenarios of at most -tekton-max tasks (default 20). Every variant runs once to warm
// up and then -runs times, interleaved, each run in its own namespace, deleted (and
// waited for) before the next run, which starts once the machine has quietened
// (-settle-below): the node goes on removing the last run's containers after its
// namespace is gone.
//
// Wall time is measured from just before the Create call to the moment a watch, opened
// before the Create, delivers the object in its end state: the CustomRun's or the
// PipelineRun's Succeeded condition True, the floor Pod's (and the pod alone's) phase
// Succeeded. Each run is broken down (Create → pod created → pod running → last task
// ended → end): pod events as the bench's pod watch delivers them; the last task's end
// for PipelineInPod and its pod alone as the reporter container printed it (its log's
// timestamps, the node's clock: the same machine on the local cluster), for Tekton as
// the last task pod reached Succeeded, for the floor as every container had terminated.
//
// CPU: the CPU-seconds the machine's cluster processes used during each run (from just
// before the Create to the end point), read from /proc: the API server, etcd, the
// kubelet, containerd and its shims, Tekton's controller and PipelineInPod's, found
// through hack/local-cluster's pid files ($PIP_CLUSTER_DIR/run) or, for a controller
// running in a pod, its cgroup. Components the bench cannot see (another cluster) are
// left out.
//
// It prints the medians of each, and the ratios PipelineInPod/floor and
// PipelineInPod/Tekton.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"slices"
	"strings"
	"sync"
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
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

var (
	kubeconfig = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster")
	runs       = flag.Int("runs", 5, "measured runs of each variant (after one warm-up)")
	image      = flag.String("image", "docker.io/library/busybox:1.37.0", "the image of every step (a pinned tag; the local cluster's registry serves it)")
	runLimit   = flag.Duration("timeout", 10*time.Minute, "how long one run may take")
	only       = flag.String("scenarios", "", "comma-separated scenarios to run (seq5,fan5,seq20,fan20,seq50); default all")
	variantsF  = flag.String("variants", "pip,pod,tekton,floor", "comma-separated variants to run (pod replays a pip run's pod: list it after pip)")
	tektonMax  = flag.Int("tekton-max", 20, "run Tekton's controller on scenarios of at most this many tasks")
	clusterDir = flag.String("cluster-dir", envOr("PIP_CLUSTER_DIR", "/var/tmp/pipelineinpod-cluster"), "the local cluster's directory (pid files under run/)")
	procRoot   = flag.String("proc", "/proc", "the proc file system the cluster's processes are in")
	// The local cluster's machine, idle, is busy about 5-15% of its time.
	settleBelow = flag.Float64("settle-below", 0.15, "before each run, wait until the machine is busy less than this fraction of a second")
	settleLimit = flag.Duration("settle-limit", time.Minute, "wait at most this long for the machine to settle")
)

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// scenario is one Pipeline.
type scenario struct {
	key   string
	title string
	spec  *v1.PipelineSpec
}

func (s scenario) tasks() int { return len(s.spec.Tasks) }

func allScenarios() []scenario {
	return []scenario{
		{"seq5", "5 sequential tasks", sequential(5)},
		{"fan5", "5 parallel tasks + join", fanOut(5)},
		{"seq20", "20 sequential tasks", sequential(20)},
		{"fan20", "20 parallel tasks + join", fanOut(20)},
		{"seq50", "50 sequential tasks", sequential(50)},
	}
}

// Variants.
const (
	pip    = "pip"
	tekton = "tekton"
	floor  = "floor"
	// podAlone is PipelineInPod's pod without the controller (aloneCopy).
	podAlone = "pod"
)

// sample is one measured run.
type sample struct {
	end time.Duration // Succeeded (CustomRun, PipelineRun) or Pod phase Succeeded (floor, pod alone)
	phases
	cpu      map[string]float64 // CPU-seconds per component
	busyPods int                // running pods in other namespaces when the run started
	// settled is how long the machine took to quieten before the run (settle), and
	// settledAt how busy it was in the last second of that wait.
	settled   time.Duration
	settledAt float64
}

// phases break a run down, each from just before the Create; zero when not seen.
type phases struct {
	podCreated, podRunning, lastTaskEnded time.Duration
}

// key names one variant of one scenario, e.g. seq20/pip.
func key(sc, variant string) string { return sc + "/" + variant }

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
	scenarios := selectScenarios(allScenarios(), *only)
	variants := strings.Split(*variantsF, ",")
	procs := components(c.Kube, *clusterDir)

	results := map[string][]sample{}
	// The pod each scenario's latest pip run created, for the pod-alone variant.
	pipPods := map[string]*corev1.Pod{}
	suffix := fmt.Sprintf("%04d", rand.Intn(10000)) //nolint:gosec // a name suffix, not a secret
	for i := 0; i <= *runs; i++ {
		for _, sc := range scenarios {
			for _, v := range variants {
				if v == tekton && sc.tasks() > *tektonMax {
					continue
				}
				ns := fmt.Sprintf("bench-%s-%s-%s-%d", sc.key, v, suffix, i)
				s, err := measure(ctx, c, ns, procs, func(ctx context.Context, ns string) (sample, error) {
					return run(ctx, c, ns, v, sc, pipPods)
				})
				label := fmt.Sprintf("run %d", i)
				if i == 0 {
					label = "warm-up"
				}
				if err != nil {
					fatal(fmt.Errorf("%s %s (namespace %s): %w", key(sc.key, v), label, ns, err))
				}
				fmt.Fprintf(os.Stderr, "bench: %-13s %-7s %7.2fs  %s  cpu %.2fs; running pods elsewhere: %d; settled in %.1fs to %.0f%% busy\n",
					key(sc.key, v), label, s.end.Seconds(), s.phases, total(s.cpu), s.busyPods, s.settled.Seconds(), 100*s.settledAt)
				if i > 0 {
					results[key(sc.key, v)] = append(results[key(sc.key, v)], s)
				}
			}
		}
	}
	fmt.Print(report(scenarios, results, *runs))
}

func selectScenarios(all []scenario, names string) []scenario {
	if names == "" {
		return all
	}
	want := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var out []scenario
	for _, s := range all {
		if want[s.key] {
			out = append(out, s)
		}
	}
	return out
}

func run(ctx context.Context, c *cluster.Clients, ns, variant string, sc scenario, pipPods map[string]*corev1.Pod) (sample, error) {
	switch variant {
	case pip:
		s, pod, err := runCustomRun(ctx, c, ns, sc.spec)
		if pod != nil {
			pipPods[sc.key] = pod
		}
		return s, err
	case tekton:
		return runPipelineRun(ctx, c, ns, sc.spec)
	case floor:
		return runPod(ctx, c, ns, floorPod(sc.tasks()))
	case podAlone:
		pod, ok := pipPods[sc.key]
		if !ok {
			return sample{}, fmt.Errorf("variant %s replays the pod of a %s run of the scenario: list %s before it in -variants", podAlone, pip, pip)
		}
		return runPod(ctx, c, ns, aloneCopy(pod))
	}
	return sample{}, fmt.Errorf("unknown variant %q", variant)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// measure runs one variant in a fresh namespace, sampling the cluster processes' CPU
// around it, and deletes the namespace afterwards, waiting until it is gone so that
// cleaning up never overlaps the next measurement.
func measure(ctx context.Context, c *cluster.Clients, ns string, procs []component, run func(context.Context, string) (sample, error)) (sample, error) {
	created, err := c.CreateNamespace(ctx, ns)
	if created {
		defer deleteNamespace(c, ns)
	}
	if err != nil {
		return sample{}, err
	}
	busy := runningPodsElsewhere(ctx, c, ns)
	p := procFS{root: *procRoot}
	waited, level, err := settle(ctx, p, time.Second, *settleBelow, *settleLimit)
	if err != nil {
		return sample{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, *runLimit)
	defer cancel()
	before := sampleCPU(ctx, p, procs)
	s, err := run(rctx, ns)
	s.cpu = cpuSeconds(before, sampleCPU(ctx, p, procs))
	s.busyPods = busy
	s.settled, s.settledAt = waited, level
	return s, err
}

func deleteNamespace(c *cluster.Clients, ns string) {
	ctx := context.Background()
	if err := c.DeleteNamespace(ctx, ns); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return
	}
	_, _ = cluster.Poll(ctx, 5*time.Minute, "namespace "+ns+" to be gone", func(ctx context.Context) (bool, string) {
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

// sequential is n tasks, one after the other, each one `echo` step.
func sequential(n int) *v1.PipelineSpec {
	spec := &v1.PipelineSpec{}
	for i := 1; i <= n; i++ {
		var after []string
		if i > 1 {
			after = []string{fmt.Sprintf("t%d", i-1)}
		}
		spec.Tasks = append(spec.Tasks, echoTask(fmt.Sprintf("t%d", i), fmt.Sprintf("task %d", i), after...))
	}
	return spec
}

// fanOut is n parallel tasks and a join task after all of them.
func fanOut(n int) *v1.PipelineSpec {
	spec := &v1.PipelineSpec{}
	var all []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("p%d", i)
		all = append(all, name)
		spec.Tasks = append(spec.Tasks, echoTask(name, fmt.Sprintf("parallel %d", i)))
	}
	spec.Tasks = append(spec.Tasks, echoTask("join", "fan-in", all...))
	return spec
}

// floorPod is one plain Pod with n containers, each just `echo`: what the kubelet
// alone takes to run as many containers.
func floorPod(n int) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever},
	}
	for i := 1; i <= n; i++ {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name: fmt.Sprintf("c%d", i), Image: *image, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"echo", fmt.Sprintf("task %d", i)},
		})
	}
	return pod
}

// aloneCopy is the pod a PipelineInPod run created, as a plain Pod of its own: its spec
// and the annotations its downward volumes read (the plan, tekton.dev/ready), without
// the owner, the labels the controller watches, the node it ran on, or what admission
// added for the service account (admission adds it again in the new namespace).
func aloneCopy(p *corev1.Pod) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Annotations: maps.Clone(p.Annotations)},
		Spec:       *p.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = ""
	admitted := func(name string) bool { return strings.HasPrefix(name, "kube-api-access-") }
	pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return admitted(v.Name) })
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return admitted(m.Name) })
		}
	}
	return pod
}

// The variants.

// podWatch records, from a watch of the run's namespace opened before the Create, when
// the first pod was created and ran, and when the last pod had every container ended.
type podWatch struct {
	mu                         sync.Mutex
	created, running, lastDone time.Time
	done                       map[string]bool
	stop                       func()
}

func watchPods(ctx context.Context, c *cluster.Clients, ns string) (*podWatch, error) {
	w, err := c.Kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	pw := &podWatch{done: map[string]bool{}, stop: w.Stop}
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok {
				pw.observe(p, time.Now())
			}
		}
	}()
	return pw, nil
}

func (pw *podWatch) observe(p *corev1.Pod, at time.Time) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.created.IsZero() {
		pw.created = at
	}
	if p.Status.Phase == corev1.PodRunning && pw.running.IsZero() {
		pw.running = at
	}
	if !pw.done[p.Name] && allTerminated(p) {
		pw.done[p.Name], pw.lastDone = true, at
	}
}

func allTerminated(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return true
	}
	if len(p.Status.ContainerStatuses) < len(p.Spec.Containers) {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Terminated == nil {
			return false
		}
	}
	return true
}

// phases are the pod events from start.
func (pw *podWatch) phases(start time.Time) phases {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return phases{podCreated: since(start, pw.created), podRunning: since(start, pw.running), lastTaskEnded: since(start, pw.lastDone)}
}

func since(start, t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(start)
}

// runCustomRun runs the pipeline through PipelineInPod: a CustomRun whose customSpec
// carries the pipelineSpec. End point: the CustomRun's Succeeded condition True. It
// also returns the run's pod, as the API server holds it at the end.
func runCustomRun(ctx context.Context, c *cluster.Clients, ns string, spec *v1.PipelineSpec) (sample, *corev1.Pod, error) {
	raw, err := json.Marshal(map[string]any{"pipelineSpec": spec})
	if err != nil {
		return sample{}, nil, err
	}
	cr := &v1beta1.CustomRun{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
		Spec: v1beta1.CustomRunSpec{
			CustomSpec: &v1beta1.EmbeddedCustomRunSpec{Spec: runtime.RawExtension{Raw: raw}},
		},
	}
	cr.Spec.CustomSpec.APIVersion, cr.Spec.CustomSpec.Kind = v1alpha1.APIVersion, v1alpha1.Kind
	pods, err := watchPods(ctx, c, ns)
	if err != nil {
		return sample{}, nil, err
	}
	defer pods.stop()
	w, err := c.Tekton.TektonV1beta1().CustomRuns(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return sample{}, nil, err
	}
	defer w.Stop()
	start := time.Now()
	if _, err := c.CreateCustomRun(ctx, ns, cr); err != nil {
		return sample{}, nil, err
	}
	end, err := until(ctx, w, func(o runtime.Object) (bool, error) {
		got, ok := o.(*v1beta1.CustomRun)
		if !ok {
			return false, nil
		}
		return succeeded(got.Status.GetCondition(apis.ConditionSucceeded), "CustomRun")
	})
	s := sample{end: end.Sub(start), phases: pods.phases(start)}
	s.lastTaskEnded = reporterEnded(ctx, c, ns, plan.PodName(cr.Name, 0), start)
	pod, perr := c.Kube.CoreV1().Pods(ns).Get(ctx, plan.PodName(cr.Name, 0), metav1.GetOptions{})
	if perr != nil {
		// The pod variant then has nothing to replay and says so.
		return s, nil, err
	}
	return s, pod, err
}

// reporterEnded is when the reporter of pod printed the last task's end, from start;
// zero when its log cannot tell.
func reporterEnded(ctx context.Context, c *cluster.Clients, ns, pod string, start time.Time) time.Duration {
	log, err := c.Kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: plan.ReporterContainer, Timestamps: true}).DoRaw(ctx)
	if err != nil {
		return 0
	}
	if t, ok := lastTaskEnded(string(log)); ok {
		return t.Sub(start)
	}
	return 0
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
	pods, err := watchPods(ctx, c, ns)
	if err != nil {
		return sample{}, err
	}
	defer pods.stop()
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
	return sample{end: end.Sub(start), phases: pods.phases(start)}, err
}

// runPod runs a plain Pod: the floor's or PipelineInPod's pod alone. End point: the
// Pod's phase Succeeded.
func runPod(ctx context.Context, c *cluster.Clients, ns string, pod *corev1.Pod) (sample, error) {
	pods, err := watchPods(ctx, c, ns)
	if err != nil {
		return sample{}, err
	}
	defer pods.stop()
	w, err := c.Kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return sample{}, err
	}
	defer w.Stop()
	start := time.Now()
	if _, err := c.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return sample{}, err
	}
	end, err := until(ctx, w, func(o runtime.Object) (bool, error) {
		p, ok := o.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			return true, nil
		case corev1.PodFailed:
			return false, fmt.Errorf("pod failed: %s", p.Status.Message)
		}
		return false, nil
	})
	s := sample{end: end.Sub(start), phases: pods.phases(start)}
	if err == nil && hasContainer(pod, plan.ReporterContainer) {
		// PipelineInPod's pod alone: the last task's end as its reporter printed it, as
		// for a PipelineInPod run.
		s.lastTaskEnded = reporterEnded(ctx, c, ns, pod.Name, start)
	}
	return s, err
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	return false
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
