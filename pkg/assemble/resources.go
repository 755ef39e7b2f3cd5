package assemble

// Right-sized pods. Kubernetes reserves for a pod the sum of its containers' requests,
// because it assumes they all run at once. Ours do not: a task's steps run one after
// another, a task's sidecars only while the task runs, and tasks in DAG order. So the
// pod asks for its peak concurrent demand instead (see README, "Pod resources").

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// AnnotationResources holds, as JSON, the pod's Resources: the peak, which tasks make
// it, our overhead and the mechanism that carries it.
const AnnotationResources = "pipelineinpod.tekton.dev/resources"

// Mechanisms that carry the peak.
const (
	// MechanismPodLevel puts the peak in spec.resources (Kubernetes pod-level resources,
	// beta and on by default since 1.34; see PodLevelResourcesSupported).
	MechanismPodLevel = "pod-level"
	// MechanismContainer puts the peak on the reporter container, which lives as long as
	// the pod, and explicit zero (or the LimitRange minimum) on every other container:
	// what Tekton did before pod-level resources existed.
	MechanismContainer = "container"
)

// Our own overhead, measured with hack/measure-overhead.sh (go1.26, linux/amd64, a
// waiting entrypoint per container as the pod starts them; 60 s): a waiting step or
// sidecar entrypoint used 1.8-2.0 millicores and 5.7-6.2 MiB of anonymous memory, the
// reporter 9.5-12.5 millicores and 6.8 MiB; each also maps ~35 MiB of the entrypoint
// binary, file pages shared by all containers (one file in one emptyDir), so counted
// once. The constants round these up with room for a slower node.
var (
	waitingEntrypointCPU    = resource.MustParse("3m")
	waitingEntrypointMemory = resource.MustParse("8Mi")
	reporterCPU             = resource.MustParse("15m")
	reporterMemory          = resource.MustParse("8Mi")
	entrypointBinaryMemory  = resource.MustParse("40Mi")
)

// Resources is what right-sizing decided for one pod.
type Resources struct {
	Mechanism string `json:"mechanism"`
	// Peak is, per resource, the largest demand of steps and sidecars that can run at
	// once (requests; a container without requests counts its limits, or the namespace
	// LimitRange's defaultRequest, as Kubernetes would).
	Peak corev1.ResourceList `json:"peak,omitempty"`
	// PeakTasks are the task keys of one set of tasks that together make the peak.
	PeakTasks map[corev1.ResourceName][]string `json:"peakTasks,omitempty"`
	// PeakLimits is the same peak over limits, for cpu and memory when every step and
	// sidecar has a limit: what the user's containers can use at once at most.
	PeakLimits corev1.ResourceList `json:"peakLimits,omitempty"`
	// Overhead is what our own processes need on top (see the constants above).
	Overhead corev1.ResourceList `json:"overhead"`
	// Requests is what the scheduler reserves for the pod; Limits the pod-level limits.
	Requests corev1.ResourceList `json:"requests"`
	Limits   corev1.ResourceList `json:"limits,omitempty"`
	// Sum is what the pod would reserve with every container keeping its own requests.
	Sum corev1.ResourceList `json:"sum,omitempty"`
	// PerContainer are resources left on their containers: extended resources (GPUs and
	// the like cannot be shared between containers) and, without pod-level resources,
	// hugepages (their requests must equal their limits).
	PerContainer []corev1.ResourceName `json:"perContainer,omitempty"`
}

// TaskDemand is one task's place in the schedule and what it needs while it runs.
type TaskDemand struct {
	Key string
	// After are the keys of the tasks that end before this one starts.
	After    []string
	Requests corev1.ResourceList
}

// Peak is the largest concurrent demand per resource.
type Peak struct {
	Quantities corev1.ResourceList
	// Tasks are, per resource, the keys (in input order) of a set of tasks that can all
	// run at once and together demand the peak; tasks demanding nothing are left out.
	Tasks map[corev1.ResourceName][]string
}

// PeakDemand computes, for every resource the tasks request, the largest total of a set
// of tasks that can run at the same time: two tasks can iff neither comes after the
// other, directly or not (so finally tasks, which come after every DAG task, only run
// with each other, and matrix instances, which share their parents, all together). It
// is a maximum weight antichain of the DAG (see maxWeightAntichain).
func PeakDemand(tasks []TaskDemand) (Peak, error) {
	index := map[string]int{}
	for i, t := range tasks {
		if _, dup := index[t.Key]; dup {
			return Peak{}, fmt.Errorf("task %q appears twice", t.Key)
		}
		index[t.Key] = i
	}
	var edges [][2]int
	for i, t := range tasks {
		for _, a := range t.After {
			j, ok := index[a]
			if !ok {
				return Peak{}, fmt.Errorf("task %q runs after %q, which is no task", t.Key, a)
			}
			edges = append(edges, [2]int{j, i})
		}
	}
	if err := acyclic(len(tasks), edges); err != nil {
		keys := make([]string, len(tasks))
		for i, t := range tasks {
			keys[i] = t.Key
		}
		return Peak{}, fmt.Errorf("%w among tasks %v", err, keys)
	}
	names := map[corev1.ResourceName]bool{}
	for _, t := range tasks {
		for r := range t.Requests {
			names[r] = true
		}
	}
	p := Peak{Quantities: corev1.ResourceList{}, Tasks: map[corev1.ResourceName][]string{}}
	for _, r := range sortedNames(names) {
		w := make([]int64, len(tasks))
		for i, t := range tasks {
			if q, ok := t.Requests[r]; ok {
				w[i] = units(r, q)
			}
		}
		total, set := maxWeightAntichain(len(tasks), edges, w)
		p.Quantities[r] = quantity(r, total)
		for _, i := range set {
			if w[i] > 0 {
				p.Tasks[r] = append(p.Tasks[r], tasks[i].Key)
			}
		}
	}
	return p, nil
}

func acyclic(n int, edges [][2]int) error {
	indeg := make([]int, n)
	out := make([][]int, n)
	for _, e := range edges {
		out[e[0]] = append(out[e[0]], e[1])
		indeg[e[1]]++
	}
	var ready []int
	for v := range n {
		if indeg[v] == 0 {
			ready = append(ready, v)
		}
	}
	seen := 0
	for len(ready) > 0 {
		v := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		seen++
		for _, u := range out[v] {
			if indeg[u]--; indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if seen != n {
		return fmt.Errorf("the tasks' order has a cycle")
	}
	return nil
}

// units turns a quantity into an integer: millicores for cpu, bytes (rounded up) for
// everything else.
func units(r corev1.ResourceName, q resource.Quantity) int64 {
	if r == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

func quantity(r corev1.ResourceName, u int64) resource.Quantity {
	if r == corev1.ResourceCPU {
		return *resource.NewMilliQuantity(u, resource.DecimalSI)
	}
	return *resource.NewQuantity(u, resource.BinarySI)
}

func str(r corev1.ResourceName, u int64) string {
	q := quantity(r, u)
	return q.String()
}

func sortedNames[V any](m map[corev1.ResourceName]V) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func isHugePages(r corev1.ResourceName) bool {
	return strings.HasPrefix(string(r), corev1.ResourceHugePagesPrefix)
}

// rightSized are the resources whose peak is computed: the shareable ones. Extended
// resources stay per container.
func rightSized(r corev1.ResourceName) bool {
	switch r {
	case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
		return true
	}
	return isHugePages(r)
}

// containerLimits is the namespace's LimitRanges seen from one container: what
// admission will fill in (Default limits, DefaultRequest requests, for what a container
// leaves unset) and check (Min, Max, MaxLimitRequestRatio). Several LimitRanges combine
// the way Tekton's pod builder combines them (pkg/internal/computeresources/limitrange):
// the largest min, the smallest max, ratio, default and defaultRequest.
type containerLimits struct {
	Min, Max, Default, DefaultRequest, Ratio corev1.ResourceList
}

func newContainerLimits(lrs []corev1.LimitRange) containerLimits {
	cl := containerLimits{Min: corev1.ResourceList{}, Max: corev1.ResourceList{}, Default: corev1.ResourceList{}, DefaultRequest: corev1.ResourceList{}, Ratio: corev1.ResourceList{}}
	larger := func(dst corev1.ResourceList, src corev1.ResourceList) {
		for r, q := range src {
			if cur, ok := dst[r]; !ok || q.Cmp(cur) > 0 {
				dst[r] = q.DeepCopy()
			}
		}
	}
	smaller := func(dst corev1.ResourceList, src corev1.ResourceList) {
		for r, q := range src {
			if cur, ok := dst[r]; !ok || q.Cmp(cur) < 0 {
				dst[r] = q.DeepCopy()
			}
		}
	}
	for _, lr := range lrs {
		for _, item := range lr.Spec.Limits {
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			// The API server's defaulting of a LimitRange (SetDefaults_LimitRangeItem):
			// default falls back to max, defaultRequest to default, then to min. Objects
			// read from the API server have it already; those of render's files do not.
			def := fill(item.Default, item.Max)
			defReq := fill(fill(item.DefaultRequest, def), item.Min)
			larger(cl.Min, item.Min)
			smaller(cl.Max, item.Max)
			smaller(cl.Ratio, item.MaxLimitRequestRatio)
			smaller(cl.Default, def)
			smaller(cl.DefaultRequest, defReq)
		}
	}
	return cl
}

// fill returns dst with src's entries for the names dst lacks.
func fill(dst, src corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for r, q := range src {
		out[r] = q.DeepCopy()
	}
	for r, q := range dst {
		out[r] = q.DeepCopy()
	}
	return out
}

func (cl containerLimits) affects(r corev1.ResourceName) bool {
	for _, l := range []corev1.ResourceList{cl.Min, cl.Default, cl.DefaultRequest, cl.Ratio} {
		if _, ok := l[r]; ok {
			return true
		}
	}
	return false
}

// request is a container's request as Kubernetes will have it: its own, else its limit
// (API defaulting), else the LimitRange's defaultRequest (admission).
func (cl containerLimits) request(c *corev1.Container, r corev1.ResourceName) (int64, bool) {
	for _, l := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits, cl.DefaultRequest} {
		if q, ok := l[r]; ok {
			return units(r, q), true
		}
	}
	return 0, false
}

// limit is a container's limit as Kubernetes will have it: its own, else the
// LimitRange's default.
func (cl containerLimits) limit(c *corev1.Container, r corev1.ResourceName) (int64, bool) {
	for _, l := range []corev1.ResourceList{c.Resources.Limits, cl.Default} {
		if q, ok := l[r]; ok {
			return units(r, q), true
		}
	}
	return 0, false
}

// floor is the least request a container may have: the LimitRange's min, and enough
// that its limit is within maxLimitRequestRatio of it (a zero request never is).
func (cl containerLimits) floor(c *corev1.Container, r corev1.ResourceName) int64 {
	var f int64
	if q, ok := cl.Min[r]; ok {
		f = units(r, q)
	}
	if ratio, ok := cl.Ratio[r]; ok && ratio.MilliValue() > 0 {
		if l, ok := cl.limit(c, r); ok {
			f = max(f, ceilRatio(l, ratio))
		}
	}
	return f
}

// ceilRatio is ceil(l / ratio) for a ratio given as a quantity.
func ceilRatio(l int64, ratio resource.Quantity) int64 {
	rm := ratio.MilliValue()
	if l <= math.MaxInt64/1000 {
		return (l*1000 + rm - 1) / rm
	}
	return l/ratio.Value() + 1
}

// rightSize sets the requests (and pod-level limits) of a merged pod from the peak
// concurrent demand of its tasks. tasks name each task's step and sidecar containers.
func rightSize(p *corev1.Pod, tasks []plan.Task, podLevel bool, lrs []corev1.LimitRange) (*Resources, error) {
	cl := newContainerLimits(lrs)
	byName := map[string]*corev1.Container{}
	for i := range p.Spec.Containers {
		byName[p.Spec.Containers[i].Name] = &p.Spec.Containers[i]
	}
	reporter := byName[plan.ReporterContainer]
	if reporter == nil {
		return nil, fmt.Errorf("the pod has no %s container", plan.ReporterContainer)
	}
	res := &Resources{Mechanism: MechanismContainer, Sum: effectiveRequests(p, cl)}
	if podLevel {
		res.Mechanism = MechanismPodLevel
	}

	// What each task needs while it runs, over requests and over limits.
	names := map[corev1.ResourceName]bool{}
	perContainer := map[corev1.ResourceName]bool{}
	var user []*corev1.Container // every step and sidecar
	for _, t := range tasks {
		for _, name := range append(append([]string{}, t.Steps...), t.Sidecars...) {
			c := byName[name]
			if c == nil {
				return nil, fmt.Errorf("task %q: no container %s in the pod", t.Key, name)
			}
			user = append(user, c)
			for _, l := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits, cl.DefaultRequest, cl.Default} {
				for r := range l {
					if rightSized(r) {
						names[r] = true
					} else {
						perContainer[r] = true
					}
				}
			}
		}
	}
	demands := make([]TaskDemand, len(tasks))
	limitDemands := make([]TaskDemand, len(tasks))
	for i, t := range tasks {
		req, lim := map[corev1.ResourceName]int64{}, map[corev1.ResourceName]int64{}
		for r := range names {
			// Steps take turns: the largest counts. Sidecars run together: all count.
			for _, name := range t.Steps {
				if q, ok := cl.request(byName[name], r); ok {
					req[r] = max(req[r], q)
				}
				if q, ok := cl.limit(byName[name], r); ok {
					lim[r] = max(lim[r], q)
				}
			}
			for _, name := range t.Sidecars {
				if q, ok := cl.request(byName[name], r); ok {
					req[r] += q
				}
				if q, ok := cl.limit(byName[name], r); ok {
					lim[r] += q
				}
			}
		}
		demands[i] = TaskDemand{Key: t.Key, After: t.RunAfter, Requests: corev1.ResourceList{}}
		limitDemands[i] = TaskDemand{Key: t.Key, After: t.RunAfter, Requests: corev1.ResourceList{}}
		for r, q := range req {
			demands[i].Requests[r] = quantity(r, q)
		}
		for r, q := range lim {
			limitDemands[i].Requests[r] = quantity(r, q)
		}
	}
	peak, err := PeakDemand(demands)
	if err != nil {
		return nil, err
	}
	res.Peak, res.PeakTasks = peak.Quantities, peak.Tasks
	// A pod-level limit only where the user limited every step and sidecar: then it is
	// what they can use at once, and no container loses anything to it.
	limited := map[corev1.ResourceName]bool{}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		limited[r] = len(user) > 0
		for _, c := range user {
			if _, ok := cl.limit(c, r); !ok {
				limited[r] = false
			}
		}
	}
	if limited[corev1.ResourceCPU] || limited[corev1.ResourceMemory] {
		peakLimits, err := PeakDemand(limitDemands)
		if err != nil {
			return nil, err
		}
		res.PeakLimits = corev1.ResourceList{}
		for r := range limited {
			if q, ok := peakLimits.Quantities[r]; ok && limited[r] {
				res.PeakLimits[r] = q
			}
		}
	}

	overhead := map[corev1.ResourceName]int64{
		corev1.ResourceCPU:    int64(len(user))*units(corev1.ResourceCPU, waitingEntrypointCPU) + units(corev1.ResourceCPU, reporterCPU),
		corev1.ResourceMemory: int64(len(user))*units(corev1.ResourceMemory, waitingEntrypointMemory) + units(corev1.ResourceMemory, reporterMemory) + units(corev1.ResourceMemory, entrypointBinaryMemory),
	}
	res.Overhead = corev1.ResourceList{}
	for r, u := range overhead {
		res.Overhead[r] = quantity(r, u)
	}
	need := func(r corev1.ResourceName) int64 {
		var u int64
		if q, ok := res.Peak[r]; ok {
			u = units(r, q)
		}
		return u + overhead[r]
	}

	all := allContainers(p)
	setFloors := func(r corev1.ResourceName) {
		for _, c := range all {
			_, hasReq := c.Resources.Requests[r]
			_, hasLim := c.Resources.Limits[r]
			if hasReq || hasLim || cl.affects(r) {
				setRequest(c, r, cl.floor(c, r))
			}
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		setFloors(r)
		// Pod-level resources cover cpu and memory only; ephemeral-storage always rides
		// on a container.
		if podLevel && r != corev1.ResourceEphemeralStorage {
			continue
		}
		if err := carry(p, reporter, r, need(r), cl, res); err != nil {
			return nil, err
		}
	}
	if podLevel {
		podLevelResources(p, res, cl, limited, need)
	}
	for r := range names {
		if isHugePages(r) && !podLevel {
			perContainer[r] = true
		}
	}
	res.PerContainer = sortedNames(perContainer)
	res.Requests = effectiveRequests(p, cl)
	return res, nil
}

// carry makes the containers' requests of r add up to need: the reporter, which runs as
// long as the pod, takes what is missing, within what the LimitRange lets one container
// have; should that not be enough, the other containers take the rest in turn.
func carry(p *corev1.Pod, reporter *corev1.Container, r corev1.ResourceName, need int64, cl containerLimits, res *Resources) error {
	var have int64
	for i := range p.Spec.Containers {
		if q, ok := cl.request(&p.Spec.Containers[i], r); ok {
			have += q
		}
	}
	order := []*corev1.Container{reporter}
	for i := range p.Spec.Containers {
		if c := &p.Spec.Containers[i]; c != reporter {
			order = append(order, c)
		}
	}
	for _, c := range order {
		if have >= need {
			return nil
		}
		cur, _ := cl.request(c, r)
		room := int64(math.MaxInt64)
		if q, ok := cl.Max[r]; ok {
			room = units(r, q) - cur
		}
		if q, ok := c.Resources.Limits[r]; ok {
			room = min(room, units(r, q)-cur)
		}
		add := min(room, need-have)
		if add <= 0 {
			continue
		}
		setRequest(c, r, cur+add)
		have += add
		// A limit the LimitRange would default below the new request makes the
		// container invalid: give it its request as limit.
		if _, own := c.Resources.Limits[r]; !own {
			if d, ok := cl.Default[r]; ok && units(r, d) < cur+add {
				if c.Resources.Limits == nil {
					c.Resources.Limits = corev1.ResourceList{}
				}
				c.Resources.Limits[r] = quantity(r, cur+add)
			}
		}
	}
	if have < need {
		return fmt.Errorf("spec.pipelineSpec: the pod needs %s of %s at its peak (tasks %v, plus our overhead), but the namespace's LimitRange lets its %d containers request only %s in all; raise the LimitRange's max, or run on a cluster with pod-level resources",
			str(r, need), r, res.PeakTasks[r], len(p.Spec.Containers), str(r, have))
	}
	return nil
}

// podLevelResources puts cpu and memory (and hugepages) in the pod's spec.resources.
func podLevelResources(p *corev1.Pod, res *Resources, cl containerLimits, limited map[corev1.ResourceName]bool, need func(corev1.ResourceName) int64) {
	pr := &corev1.ResourceRequirements{Requests: corev1.ResourceList{}}
	aggregate := effectiveRequests(p, cl)
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		// Pod-level requests may not be below what the containers request in all (their
		// LimitRange floors).
		req := need(r)
		if q, ok := aggregate[r]; ok {
			req = max(req, units(r, q))
		}
		pr.Requests[r] = quantity(r, req)
		if !limited[r] {
			continue
		}
		// At least every container's own limit (a pod-level limit below one is invalid)
		// and the requests.
		lim := units(r, res.PeakLimits[r]) + units(r, res.Overhead[r])
		lim = max(lim, req)
		for _, c := range allContainers(p) {
			if l, ok := cl.limit(c, r); ok {
				lim = max(lim, l)
			}
		}
		if pr.Limits == nil {
			pr.Limits = corev1.ResourceList{}
		}
		pr.Limits[r] = quantity(r, lim)
	}
	// Hugepages cannot be overcommitted: a container's request equals its limit, and the
	// pod's limit must cover the containers' limits. So they move to the pod, which then
	// holds the peak; the steps share it.
	for r, q := range res.Peak {
		if !isHugePages(r) || q.IsZero() {
			continue
		}
		for _, c := range allContainers(p) {
			delete(c.Resources.Requests, r)
			delete(c.Resources.Limits, r)
		}
		if pr.Limits == nil {
			pr.Limits = corev1.ResourceList{}
		}
		pr.Requests[r], pr.Limits[r] = q.DeepCopy(), q.DeepCopy()
	}
	res.Limits = pr.Limits
	p.Spec.Resources = pr
}

func allContainers(p *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range p.Spec.InitContainers {
		out = append(out, &p.Spec.InitContainers[i])
	}
	for i := range p.Spec.Containers {
		out = append(out, &p.Spec.Containers[i])
	}
	return out
}

func setRequest(c *corev1.Container, r corev1.ResourceName, u int64) {
	if c.Resources.Requests == nil {
		c.Resources.Requests = corev1.ResourceList{}
	}
	c.Resources.Requests[r] = quantity(r, u)
}

// effectiveRequests is what the scheduler reserves for the pod, as Kubernetes counts it
// (resourcehelper.PodRequests): the containers' requests added up, at least the largest
// init container's, replaced by the pod-level requests where there are some.
func effectiveRequests(p *corev1.Pod, cl containerLimits) corev1.ResourceList {
	sum := map[corev1.ResourceName]int64{}
	names := map[corev1.ResourceName]bool{}
	for _, c := range allContainers(p) {
		for _, l := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits, cl.DefaultRequest} {
			for r := range l {
				names[r] = true
			}
		}
	}
	for r := range names {
		for i := range p.Spec.Containers {
			if q, ok := cl.request(&p.Spec.Containers[i], r); ok {
				sum[r] += q
			}
		}
		for i := range p.Spec.InitContainers {
			if q, ok := cl.request(&p.Spec.InitContainers[i], r); ok {
				sum[r] = max(sum[r], q)
			}
		}
	}
	out := corev1.ResourceList{}
	for r, u := range sum {
		if u > 0 {
			out[r] = quantity(r, u)
		}
	}
	if p.Spec.Resources != nil {
		for r, q := range p.Spec.Resources.Requests {
			out[r] = q.DeepCopy()
		}
	}
	return out
}

// limitRanges lists the LimitRanges of the pod's namespace, as Tekton's pod builder
// reads them for a TaskRun's pod.
func limitRanges(ctx context.Context, opts Options, namespace string) ([]corev1.LimitRange, error) {
	if opts.KubeClient == nil {
		return nil, nil
	}
	l, err := opts.KubeClient.CoreV1().LimitRanges(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the LimitRanges of namespace %s, which bound the pod's requests: %w", namespace, err)
	}
	return l.Items, nil
}

// sizePod right-sizes the merged pod and records the outcome on it.
func sizePod(ctx context.Context, opts Options, p *corev1.Pod, pl *plan.Plan) (*Resources, error) {
	lrs, err := limitRanges(ctx, opts, p.Namespace)
	if err != nil {
		return nil, err
	}
	// Kubernetes refuses pod-level resources on Windows pods.
	podLevel := opts.PodLevelResources && (p.Spec.OS == nil || p.Spec.OS.Name != corev1.Windows)
	res, err := rightSize(p, pl.Tasks, podLevel, lrs)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	p.Annotations[AnnotationResources] = string(b)
	return res, nil
}

// String is one line for people: the requests, the peak and the tasks that make it.
func (r *Resources) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s resources: requests %s", r.Mechanism, list(r.Requests))
	if len(r.Limits) > 0 {
		fmt.Fprintf(&b, ", limits %s", list(r.Limits))
	}
	fmt.Fprintf(&b, " for a peak of %s plus overhead %s", list(r.Peak), list(r.Overhead))
	for _, n := range sortedNames(r.PeakTasks) {
		fmt.Fprintf(&b, "; %s peak from %s", n, strings.Join(r.PeakTasks[n], ", "))
	}
	fmt.Fprintf(&b, "; every container's own requests would sum to %s", list(r.Sum))
	if len(r.PerContainer) > 0 {
		fmt.Fprintf(&b, "; per container: %v", r.PerContainer)
	}
	return b.String()
}

func list(l corev1.ResourceList) string {
	if len(l) == 0 {
		return "none"
	}
	var parts []string
	for _, r := range sortedNames(l) {
		q := l[r]
		parts = append(parts, fmt.Sprintf("%s=%s", r, q.String()))
	}
	return strings.Join(parts, " ")
}
