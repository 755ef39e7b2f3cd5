package assemble

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

func rl(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

func td(key string, req corev1.ResourceList, after ...string) TaskDemand {
	return TaskDemand{Key: key, After: after, Requests: req}
}

// String forms, so a test compares 1500m and 1.5 as one value.
func canon(l corev1.ResourceList) map[corev1.ResourceName]string {
	out := map[corev1.ResourceName]string{}
	for r, q := range l {
		c := quantity(r, units(r, q))
		out[r] = c.String()
	}
	return out
}

func TestPeakDemand(t *testing.T) {
	cpu := func(v string) corev1.ResourceList { return rl("cpu", v) }
	var finallyAfter []string
	fanOut := []TaskDemand{td("root", cpu("1"))}
	for i := range 8 {
		k := fmt.Sprintf("w%d", i)
		fanOut = append(fanOut, td(k, cpu("500m"), "root"))
		finallyAfter = append(finallyAfter, k)
	}
	finallyAfter = append(finallyAfter, "root")
	for _, tc := range []struct {
		name      string
		tasks     []TaskDemand
		want      corev1.ResourceList
		wantTasks map[corev1.ResourceName][]string
	}{{
		name:      "chain: one task at a time",
		tasks:     []TaskDemand{td("a", cpu("1")), td("b", cpu("2"), "a"), td("c", cpu("1500m"), "b")},
		want:      cpu("2"),
		wantTasks: map[corev1.ResourceName][]string{"cpu": {"b"}},
	}, {
		name:      "diamond: the two middle tasks together",
		tasks:     []TaskDemand{td("top", cpu("3")), td("l", cpu("1"), "top"), td("r", cpu("1500m"), "top"), td("bottom", cpu("2"), "l", "r")},
		want:      cpu("3"),
		wantTasks: map[corev1.ResourceName][]string{"cpu": {"top"}},
	}, {
		name:      "diamond whose middle outweighs its ends",
		tasks:     []TaskDemand{td("top", cpu("1")), td("l", cpu("1"), "top"), td("r", cpu("1500m"), "top"), td("bottom", cpu("2"), "l", "r")},
		want:      cpu("2500m"),
		wantTasks: map[corev1.ResourceName][]string{"cpu": {"l", "r"}},
	}, {
		name:  "wide fan-out: every branch at once",
		tasks: fanOut,
		want:  cpu("4"),
	}, {
		name: "fan-out then finally: finally tasks only run together, after the DAG",
		tasks: append(append([]TaskDemand{}, fanOut...),
			td("f1", cpu("3"), finallyAfter...), td("f2", cpu("2"), finallyAfter...)),
		want:      cpu("5"),
		wantTasks: map[corev1.ResourceName][]string{"cpu": {"f1", "f2"}},
	}, {
		name: "matrix: instances share their parents, so they run together",
		tasks: []TaskDemand{td("prep", cpu("1")),
			td("build-0", cpu("700m"), "prep"), td("build-1", cpu("700m"), "prep"), td("build-2", cpu("700m"), "prep"),
			td("side", cpu("100m")), // no parents: runs with anything
			td("push", cpu("1"), "build-0", "build-1", "build-2")},
		want:      cpu("2200m"),
		wantTasks: map[corev1.ResourceName][]string{"cpu": {"build-0", "build-1", "build-2", "side"}},
	}, {
		name: "mixed resources: each resource has its own peak, from different tasks",
		tasks: []TaskDemand{
			td("cpu-heavy", rl("cpu", "4", "memory", "256Mi")),
			td("mem-heavy", rl("cpu", "500m", "memory", "8Gi", "ephemeral-storage", "1Gi"), "cpu-heavy"),
			td("disk", rl("ephemeral-storage", "5Gi", "hugepages-2Mi", "64Mi")),
			td("last", rl("cpu", "1", "memory", "1Gi"), "mem-heavy", "disk"),
		},
		// disk has no parents, so it runs with either of the first two.
		want: rl("cpu", "4", "memory", "8Gi", "ephemeral-storage", "6Gi", "hugepages-2Mi", "64Mi"),
		wantTasks: map[corev1.ResourceName][]string{
			"cpu": {"cpu-heavy"}, "memory": {"mem-heavy"}, "ephemeral-storage": {"mem-heavy", "disk"}, "hugepages-2Mi": {"disk"},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PeakDemand(tc.tasks)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(canon(tc.want), canon(got.Quantities)); d != "" {
				t.Errorf("peak (-want +got):\n%s", d)
			}
			if tc.wantTasks != nil {
				if d := cmp.Diff(tc.wantTasks, got.Tasks); d != "" {
					t.Errorf("peak tasks (-want +got):\n%s", d)
				}
			}
		})
	}
}

func TestPeakDemandErrors(t *testing.T) {
	for _, tc := range []struct {
		tasks []TaskDemand
		want  string
	}{
		{[]TaskDemand{td("a", nil, "nowhere")}, `runs after "nowhere", which is no task`},
		{[]TaskDemand{td("a", nil), td("a", nil)}, `task "a" appears twice`},
		{[]TaskDemand{td("a", nil, "b"), td("b", nil, "a")}, "cycle"},
	} {
		if _, err := PeakDemand(tc.tasks); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error with %q", tc.tasks, err, tc.want)
		}
	}
}

// testTask is a task of a hand-made merged pod: its steps' and sidecars' resources.
type testTask struct {
	key      string
	after    []string
	steps    []corev1.ResourceRequirements
	sidecars []corev1.ResourceRequirements
}

func res(req, lim corev1.ResourceList) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: req, Limits: lim}
}

// mergedPod lays out containers as merge does: each task's steps then sidecars, then the
// reporter; one init container of ours.
func mergedPod(tasks ...testTask) (*corev1.Pod, []plan.Task) {
	p := &corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: ContainerInit}}}}
	var pts []plan.Task
	for _, t := range tasks {
		pt := plan.Task{Key: t.key, RunAfter: t.after}
		for i, r := range t.steps {
			name := fmt.Sprintf("step-%s-s%d", t.key, i)
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Resources: *r.DeepCopy()})
			pt.Steps = append(pt.Steps, name)
		}
		for i, r := range t.sidecars {
			name := fmt.Sprintf("step-%s-sc%d", t.key, i)
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Resources: *r.DeepCopy()})
			pt.Sidecars = append(pt.Sidecars, name)
		}
		pts = append(pts, pt)
	}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: plan.ReporterContainer})
	return p, pts
}

// overheadOf is our overhead for n steps and sidecars.
func overheadOf(n int64) (cpu, mem int64) {
	return n*waitingEntrypointCPU.MilliValue() + reporterCPU.MilliValue(),
		n*waitingEntrypointMemory.Value() + reporterMemory.Value() + entrypointBinaryMemory.Value()
}

// A task's demand is its largest step plus all its sidecars.
func TestRightSizeSidecars(t *testing.T) {
	p, tasks := mergedPod(
		testTask{key: "a",
			steps:    []corev1.ResourceRequirements{res(rl("cpu", "1", "memory", "1Gi"), nil), res(rl("cpu", "2", "memory", "512Mi"), nil)},
			sidecars: []corev1.ResourceRequirements{res(rl("cpu", "250m", "memory", "256Mi"), nil), res(nil, rl("cpu", "250m"))}},
		testTask{key: "b", after: []string{"a"},
			steps: []corev1.ResourceRequirements{res(rl("cpu", "2", "memory", "1Gi"), nil)}},
	)
	r, err := rightSize(p, tasks, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	// a: max(1, 2) + 250m + 250m (a limit is its request) = 2.5; memory max(1Gi, 512Mi) + 256Mi.
	if d := cmp.Diff(canon(rl("cpu", "2500m", "memory", "1280Mi")), canon(r.Peak)); d != "" {
		t.Errorf("peak (-want +got):\n%s", d)
	}
	cpu, mem := overheadOf(5)
	want := rl("cpu", fmt.Sprintf("%dm", 2500+cpu), "memory", fmt.Sprint(1280<<20+mem))
	if d := cmp.Diff(canon(want), canon(p.Spec.Resources.Requests)); d != "" {
		t.Errorf("pod requests (-want +got):\n%s", d)
	}
	admit(t, p, nil)
}

// Limits: each container keeps its own; the pod gets a limit only for a resource every
// step and sidecar limits, the peak of those limits plus overhead. With requests equal
// to limits everywhere the pod is Guaranteed, as the user's steps imply.
func TestRightSizeLimitsAndQoS(t *testing.T) {
	g := func(cpu, mem string) corev1.ResourceRequirements {
		return res(rl("cpu", cpu, "memory", mem), rl("cpu", cpu, "memory", mem))
	}
	p, tasks := mergedPod(
		testTask{key: "a", steps: []corev1.ResourceRequirements{g("1", "1Gi"), g("500m", "2Gi")}},
		testTask{key: "b", steps: []corev1.ResourceRequirements{g("1", "1Gi")}, sidecars: []corev1.ResourceRequirements{g("100m", "64Mi")}},
	)
	r, err := rightSize(p, tasks, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.Resources.Limits == nil || p.Spec.Resources.Requests.Cpu().Cmp(*p.Spec.Resources.Limits.Cpu()) != 0 || p.Spec.Resources.Requests.Memory().Cmp(*p.Spec.Resources.Limits.Memory()) != 0 {
		t.Errorf("want pod requests = limits (Guaranteed), got %+v", p.Spec.Resources)
	}
	cpu, mem := overheadOf(4)
	// a and b run at once: cpu max(1, 500m) + 1 + 100m, memory max(1Gi, 2Gi) + 1Gi + 64Mi.
	want := rl("cpu", fmt.Sprintf("%dm", 2100+cpu), "memory", fmt.Sprint(3136<<20+mem))
	if d := cmp.Diff(canon(want), canon(r.Limits)); d != "" {
		t.Errorf("pod limits (-want +got):\n%s", d)
	}
	for _, c := range p.Spec.Containers[:4] {
		if c.Resources.Limits.Cpu().IsZero() || !c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("%s: want its own limit and an explicit zero request, got %+v", c.Name, c.Resources)
		}
	}
	if got := qos(p); got != corev1.PodQOSGuaranteed {
		t.Errorf("QoS %s, want Guaranteed", got)
	}
	admit(t, p, nil)

	// One step without a memory limit: no pod memory limit, Burstable.
	p, tasks = mergedPod(
		testTask{key: "a", steps: []corev1.ResourceRequirements{g("1", "1Gi"), res(rl("cpu", "1"), rl("cpu", "1"))}},
	)
	if _, err := rightSize(p, tasks, true, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Spec.Resources.Limits[corev1.ResourceMemory]; ok {
		t.Errorf("a pod memory limit although a step has none: %+v", p.Spec.Resources)
	}
	if _, ok := p.Spec.Resources.Limits[corev1.ResourceCPU]; !ok {
		t.Errorf("no pod cpu limit although every step has one: %+v", p.Spec.Resources)
	}
	if got := qos(p); got != corev1.PodQOSBurstable {
		t.Errorf("QoS %s, want Burstable", got)
	}
	admit(t, p, nil)
}

// Extended resources stay on their containers; hugepages move to the pod with
// pod-level resources, and stay on their containers without.
func TestRightSizeExtendedAndHugePages(t *testing.T) {
	step := res(rl("cpu", "1", "nvidia.com/gpu", "1", "hugepages-2Mi", "128Mi"), rl("nvidia.com/gpu", "1", "hugepages-2Mi", "128Mi"))
	for _, podLevel := range []bool{true, false} {
		p, tasks := mergedPod(
			testTask{key: "a", steps: []corev1.ResourceRequirements{step, step}},
			testTask{key: "b", steps: []corev1.ResourceRequirements{step}},
		)
		r, err := rightSize(p, tasks, podLevel, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Spec.Containers[:3] {
			if q := c.Resources.Limits["nvidia.com/gpu"]; q.Cmp(resource.MustParse("1")) != 0 {
				t.Errorf("pod-level %v: %s lost its GPU: %+v", podLevel, c.Name, c.Resources)
			}
		}
		hp := corev1.ResourceName("hugepages-2Mi")
		if podLevel {
			if q := p.Spec.Resources.Limits[hp]; q.Cmp(resource.MustParse("256Mi")) != 0 {
				t.Errorf("pod hugepages %s, want the peak 256Mi (a and b at once)", q.String())
			}
			if _, ok := p.Spec.Containers[0].Resources.Limits[hp]; ok {
				t.Errorf("hugepages left on a container next to the pod's")
			}
		} else {
			if _, ok := p.Spec.Containers[0].Resources.Limits[hp]; !ok {
				t.Errorf("hugepages taken off a container without pod-level resources")
			}
			if d := cmp.Diff([]corev1.ResourceName{hp, "nvidia.com/gpu"}, r.PerContainer); d != "" {
				t.Errorf("per container (-want +got):\n%s", d)
			}
		}
		admit(t, p, nil)
	}
}

func limitRange(item corev1.LimitRangeItem) corev1.LimitRange {
	item.Type = corev1.LimitTypeContainer
	return corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{item}}}
}

// A namespace's LimitRange still gets a valid pod that reserves its peak, whether it
// defaults requests, sets a minimum, caps containers or bounds the limit/request ratio.
func TestRightSizeLimitRanges(t *testing.T) {
	plain := func(n int) []corev1.ResourceRequirements { return make([]corev1.ResourceRequirements, n) }
	threeTasks := func() (*corev1.Pod, []plan.Task) {
		return mergedPod(
			testTask{key: "a", steps: plain(2)},
			testTask{key: "b", steps: []corev1.ResourceRequirements{res(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "2", "memory", "2Gi"))}},
			testTask{key: "c", after: []string{"a", "b"}, steps: plain(1)},
		)
	}
	for _, tc := range []struct {
		name string
		lrs  []corev1.LimitRange
		// peak cpu (millicores) that must be reserved before overhead
		peakCPU int64
		wantErr string
	}{{
		name:    "no LimitRange",
		peakCPU: 1000,
	}, {
		name:    "defaultRequest 500m: steps without requests count it",
		lrs:     []corev1.LimitRange{limitRange(corev1.LimitRangeItem{DefaultRequest: rl("cpu", "500m", "memory", "128Mi")})},
		peakCPU: 1500,
	}, {
		name:    "default only: defaultRequest follows it",
		lrs:     []corev1.LimitRange{limitRange(corev1.LimitRangeItem{Default: rl("cpu", "500m", "memory", "256Mi")})},
		peakCPU: 1500,
	}, {
		name:    "min: no container below it",
		lrs:     []corev1.LimitRange{limitRange(corev1.LimitRangeItem{Min: rl("cpu", "50m", "memory", "16Mi")})},
		peakCPU: 1050, // a's steps count the min (their defaultRequest)
	}, {
		name:    "max 2: the reporter carries at most 2 CPU, the rest spreads",
		lrs:     []corev1.LimitRange{limitRange(corev1.LimitRangeItem{Max: rl("cpu", "2", "memory", "4Gi"), Default: rl("cpu", "1", "memory", "1Gi")})},
		peakCPU: 2000,
	}, {
		name:    "maxLimitRequestRatio 4: requests of at least limit/4",
		lrs:     []corev1.LimitRange{limitRange(corev1.LimitRangeItem{Default: rl("cpu", "1", "memory", "1Gi"), DefaultRequest: rl("cpu", "100m", "memory", "128Mi"), MaxLimitRequestRatio: rl("cpu", "4", "memory", "4")})},
		peakCPU: 1100,
	}, {
		name: "two LimitRanges: the largest min, the smallest default",
		lrs: []corev1.LimitRange{
			limitRange(corev1.LimitRangeItem{Min: rl("cpu", "10m"), DefaultRequest: rl("cpu", "700m")}),
			limitRange(corev1.LimitRangeItem{Min: rl("cpu", "20m"), DefaultRequest: rl("cpu", "300m")}),
		},
		peakCPU: 1300,
	}, {
		name:    "max too small for the peak on any container",
		lrs:     []corev1.LimitRange{limitRange(corev1.LimitRangeItem{Max: rl("cpu", "5m")})},
		wantErr: "LimitRange lets its 5 containers request only",
	}} {
		for _, podLevel := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/pod-level=%v", tc.name, podLevel), func(t *testing.T) {
				p, tasks := threeTasks()
				if tc.wantErr != "" {
					// Steps within the max (b's own 1 CPU is over it: Tekton's pod would
					// fail too); their peak (10m) and our overhead (27m) still exceed
					// the 5 containers' 25m.
					for i := range p.Spec.Containers[:4] {
						p.Spec.Containers[i].Resources = res(rl("cpu", "5m"), rl("cpu", "5m"))
					}
				}
				r, err := rightSize(p, tasks, podLevel, tc.lrs)
				if tc.wantErr != "" {
					if podLevel {
						// Pod-level resources need no container to carry the peak.
						if err != nil {
							t.Fatal(err)
						}
						admit(t, p, tc.lrs)
						return
					}
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := r.Peak.Cpu().MilliValue(); got != tc.peakCPU {
					t.Errorf("peak cpu %dm, want %dm", got, tc.peakCPU)
				}
				reserved := admit(t, p, tc.lrs)
				cpu, _ := overheadOf(4)
				if got := reserved.Cpu().MilliValue(); got < tc.peakCPU+cpu {
					t.Errorf("the pod reserves %dm cpu, below the peak %dm + overhead %dm", got, tc.peakCPU, cpu)
				}
				// Right-sized: no more than the peak, the overhead and the containers'
				// floors (their LimitRange minimum or ratio share).
				var floors int64
				cl := newContainerLimits(tc.lrs)
				for _, c := range p.Spec.Containers {
					floors += cl.floor(&c, corev1.ResourceCPU)
				}
				if got := reserved.Cpu().MilliValue(); got > tc.peakCPU+cpu+floors {
					t.Errorf("the pod reserves %dm cpu, over the peak %dm + overhead %dm + floors %dm", got, tc.peakCPU, cpu, floors)
				}
			})
		}
	}
}

// admit does to a pod what the API server would, for resources: API defaulting
// (requests from limits), LimitRanger's defaults and checks (Container items), and pod
// validation (a request at most its limit; pod-level requests at least the containers'
// and limits at least any container's). It fails the test on an invalid pod and
// returns what the scheduler reserves.
func admit(t *testing.T, orig *corev1.Pod, lrs []corev1.LimitRange) corev1.ResourceList {
	t.Helper()
	p := orig.DeepCopy()
	cl := newContainerLimits(lrs)
	all := allContainers(p)
	for _, c := range all {
		for r, q := range c.Resources.Limits {
			if _, ok := c.Resources.Requests[r]; !ok {
				setRequest(c, r, units(r, q))
			}
		}
		for r, q := range cl.Default {
			if _, ok := c.Resources.Limits[r]; !ok {
				if c.Resources.Limits == nil {
					c.Resources.Limits = corev1.ResourceList{}
				}
				c.Resources.Limits[r] = q
			}
		}
		for r, q := range cl.DefaultRequest {
			if _, ok := c.Resources.Requests[r]; !ok {
				setRequest(c, r, units(r, q))
			}
		}
	}
	for _, c := range all {
		for r, req := range c.Resources.Requests {
			if lim, ok := c.Resources.Limits[r]; ok && req.Cmp(lim) > 0 {
				t.Errorf("%s: %s request %s over its limit %s", c.Name, r, req.String(), lim.String())
			}
			if isHugePages(r) || !rightSized(r) {
				if lim := c.Resources.Limits[r]; req.Cmp(lim) != 0 {
					t.Errorf("%s: %s request %s differs from its limit %s", c.Name, r, req.String(), lim.String())
				}
			}
		}
		for r, min := range cl.Min {
			if req, ok := c.Resources.Requests[r]; !ok || req.Cmp(min) < 0 {
				t.Errorf("%s: %s request %v below the LimitRange min %s", c.Name, r, c.Resources.Requests[r], min.String())
			}
		}
		for r, max := range cl.Max {
			if lim, ok := c.Resources.Limits[r]; !ok || lim.Cmp(max) > 0 {
				t.Errorf("%s: %s limit %v over the LimitRange max %s", c.Name, r, c.Resources.Limits[r], max.String())
			}
		}
		for r, ratio := range cl.Ratio {
			req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
			if req.IsZero() || lim.IsZero() || float64(units(r, lim))/float64(units(r, req)) > float64(ratio.MilliValue())/1000 {
				t.Errorf("%s: %s limit %s / request %s over the ratio %s", c.Name, r, lim.String(), req.String(), ratio.String())
			}
		}
	}
	if pr := p.Spec.Resources; pr != nil {
		aggregate := effectiveRequests(&corev1.Pod{Spec: corev1.PodSpec{InitContainers: p.Spec.InitContainers, Containers: p.Spec.Containers}}, containerLimits{})
		for r, q := range pr.Requests {
			if a := aggregate[r]; a.Cmp(q) > 0 {
				t.Errorf("pod-level %s request %s below the containers' %s", r, q.String(), a.String())
			}
			if l, ok := pr.Limits[r]; ok && q.Cmp(l) > 0 {
				t.Errorf("pod-level %s request %s over the pod limit %s", r, q.String(), l.String())
			}
		}
		for r, l := range pr.Limits {
			for _, c := range p.Spec.Containers {
				if cl, ok := c.Resources.Limits[r]; ok && cl.Cmp(l) > 0 {
					t.Errorf("%s: %s limit %s over the pod's %s", c.Name, r, cl.String(), l.String())
				}
			}
		}
	}
	return effectiveRequests(p, containerLimits{})
}

// qos is Kubernetes' QoS class (ComputePodQOS) for cpu and memory, pod-level first.
func qos(p *corev1.Pod) corev1.PodQOSClass {
	if pr := p.Spec.Resources; pr != nil {
		if len(pr.Requests)+len(pr.Limits) == 0 {
			return corev1.PodQOSBestEffort
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			l, ok := pr.Limits[r]
			req := pr.Requests[r]
			if !ok || req.Cmp(l) != 0 {
				return corev1.PodQOSBurstable
			}
		}
		return corev1.PodQOSGuaranteed
	}
	anySet, guaranteed := false, true
	for _, c := range allContainers(p) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
			anySet = anySet || !req.IsZero() || !lim.IsZero()
			if lim.IsZero() || req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !anySet:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
