package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: clock ticks of
// sysconf(_SC_CLK_TCK), which Linux fixes at 100 for what it exposes to user space.
const userHZ = 100

// procStat is what the bench reads of /proc/<pid>/stat (proc(5)).
type procStat struct {
	ppid int
	// ticks is utime+stime+cutime+cstime: the process's CPU time and that of the
	// children it waited for, so a child that ends between two samples still counts.
	ticks     uint64
	starttime string
}

// parseStat reads a /proc/<pid>/stat line. The command (field 2) is in parentheses and
// may hold spaces and parentheses itself: the fields are counted from the last ")".
func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("no command in %q", s)
	}
	// From field 3 (state) on.
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("%d fields after the command in %q", len(f), s)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("ppid %q: %w", f[1], err)
	}
	var ticks uint64
	// utime, stime, cutime, cstime are fields 14-17.
	for _, v := range f[11:15] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("CPU time %q: %w", v, err)
		}
		if n > 0 {
			ticks += uint64(n)
		}
	}
	return procStat{ppid: ppid, ticks: ticks, starttime: f[19]}, nil
}

// parsePidFile reads a pid file of hack/local-cluster ("PID STARTTIME", lib.sh
// start_daemon), so that a recycled pid is never taken for the daemon.
func parsePidFile(s string) (pid int, starttime string, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, "", fmt.Errorf("pid file %q: want \"PID STARTTIME\"", s)
	}
	pid, err = strconv.Atoi(f[0])
	return pid, f[1], err
}

// inPod tells whether a /proc/<pid>/cgroup belongs to the pod of this UID, with the
// cgroupfs driver (pod<uid>) or the systemd one (pod<uid with underscores>.slice).
func inPod(cgroup, uid string) bool {
	return uid != "" && (strings.Contains(cgroup, "pod"+uid) || strings.Contains(cgroup, "pod"+strings.ReplaceAll(uid, "-", "_")))
}

// procFS reads a /proc tree (a directory in tests).
type procFS struct{ root string }

func (p procFS) read(pid int, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), name))
	return string(b), err
}

// snapshot is every process's stat, by pid.
type snapshot map[int]procStat

func (p procFS) snapshot() (snapshot, error) {
	entries, err := os.ReadDir(p.root)
	if err != nil {
		return nil, err
	}
	out := snapshot{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s, err := p.read(pid, "stat")
		if err != nil {
			continue // gone meanwhile
		}
		if st, err := parseStat(s); err == nil {
			out[pid] = st
		}
	}
	return out, nil
}

// tree is pid and every process descending from it.
func (s snapshot) tree(pid int) []int {
	children := map[int][]int{}
	for p, st := range s {
		children[st.ppid] = append(children[st.ppid], p)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		out = append(out, p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	if _, ok := s[pid]; ok {
		walk(pid)
	}
	sort.Ints(out)
	return out
}

func (s snapshot) ticks(pids []int) uint64 {
	var t uint64
	for _, p := range pids {
		t += s[p].ticks
	}
	return t
}

// component is one of the machine's cluster processes whose CPU a run costs.
type component struct {
	name string
	// pids finds its processes in a snapshot; none when it does not run here.
	pids func(ctx context.Context, p procFS, s snapshot) []int
}

// fromPidFile is a daemon of hack/local-cluster and its descendants.
func fromPidFile(path string) func(context.Context, procFS, snapshot) []int {
	return func(_ context.Context, _ procFS, s snapshot) []int {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		pid, start, err := parsePidFile(string(b))
		if err != nil || s[pid].starttime != start {
			return nil
		}
		return s.tree(pid)
	}
}

// withCommand are the processes whose command line starts with a program of this base
// name (the container runtime's shims, which daemonize away from containerd).
func withCommand(base string) func(context.Context, procFS, snapshot) []int {
	return func(_ context.Context, p procFS, s snapshot) []int {
		var out []int
		for pid := range s {
			cmd, err := p.read(pid, "cmdline")
			if err == nil && filepath.Base(strings.SplitN(cmd, "\x00", 2)[0]) == base {
				out = append(out, pid)
			}
		}
		sort.Ints(out)
		return out
	}
}

// ofPods are the processes of the pods a label selector finds in a namespace.
func ofPods(kube kubernetes.Interface, ns, selector string) func(context.Context, procFS, snapshot) []int {
	return func(ctx context.Context, p procFS, s snapshot) []int {
		if kube == nil {
			return nil
		}
		pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil || len(pods.Items) == 0 {
			return nil
		}
		var out []int
		for pid := range s {
			cg, err := p.read(pid, "cgroup")
			if err != nil {
				continue
			}
			for _, pod := range pods.Items {
				if inPod(cg, string(pod.UID)) {
					out = append(out, pid)
					break
				}
			}
		}
		sort.Ints(out)
		return out
	}
}

// firstOf is the first finder that finds processes.
func firstOf(finders ...func(context.Context, procFS, snapshot) []int) func(context.Context, procFS, snapshot) []int {
	return func(ctx context.Context, p procFS, s snapshot) []int {
		for _, f := range finders {
			if pids := f(ctx, p, s); len(pids) > 0 {
				return pids
			}
		}
		return nil
	}
}

func allOf(finders ...func(context.Context, procFS, snapshot) []int) func(context.Context, procFS, snapshot) []int {
	return func(ctx context.Context, p procFS, s snapshot) []int {
		var out []int
		for _, f := range finders {
			out = append(out, f(ctx, p, s)...)
		}
		return out
	}
}

// components are the local cluster's processes (hack/local-cluster): the API server,
// etcd, the kubelet, containerd (with its shims) and both controllers, each found in
// the cluster (a pod) or on the host (hack/local-cluster's pid files), wherever it runs.
func components(kube kubernetes.Interface, clusterDir string) []component {
	run := filepath.Join(clusterDir, "run")
	pidFile := func(name string) string { return filepath.Join(run, "pids", name+".pid") }
	netns := func(name string) string { return filepath.Join(run, "netns", name, "main.pid") }
	return []component{
		{"apiserver", fromPidFile(pidFile("kube-apiserver"))},
		{"etcd", fromPidFile(pidFile("etcd"))},
		{"kubelet", fromPidFile(pidFile("kubelet"))},
		{"containerd", allOf(fromPidFile(pidFile("containerd")), withCommand("containerd-shim-runc-v2"))},
		{"tekton-controller", firstOf(
			fromPidFile(netns("tekton-pipelines-controller")),
			ofPods(kube, "tekton-pipelines", "app.kubernetes.io/name=controller,app.kubernetes.io/part-of=tekton-pipelines"),
		)},
		{"pip-controller", firstOf(
			ofPods(kube, "pipelineinpod", "app.kubernetes.io/name=controller,app.kubernetes.io/part-of=pipelineinpod"),
			fromPidFile(netns("pipelineinpod-controller")),
		)},
	}
}

// cpuSample is the CPU ticks each component has used so far; a component not found is
// absent.
type cpuSample map[string]uint64

func sampleCPU(ctx context.Context, p procFS, cs []component) cpuSample {
	s, err := p.snapshot()
	if err != nil {
		return nil
	}
	out := cpuSample{}
	for _, c := range cs {
		if pids := c.pids(ctx, p, s); len(pids) > 0 {
			out[c.name] = s.ticks(pids)
		}
	}
	return out
}

// cpuSeconds is what each component used between two samples, in CPU-seconds; a
// component found in only one of them (it restarted, or runs elsewhere) is left out.
func cpuSeconds(before, after cpuSample) map[string]float64 {
	out := map[string]float64{}
	for name, b := range before {
		if a, ok := after[name]; ok && a >= b {
			out[name] = float64(a-b) / userHZ
		}
	}
	return out
}

// machineTicks reads the aggregate "cpu" line of /proc/stat (proc(5)): the ticks the
// machine has spent busy (all but idle and iowait) and in all, over its CPUs.
func (p procFS) machineTicks() (busy, all uint64, err error) {
	b, err := os.ReadFile(filepath.Join(p.root, "stat"))
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("no aggregate cpu line in %q", line)
	}
	// user nice system idle iowait irq softirq steal; guest time is already in user.
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat field %d %q: %w", i+1, v, err)
		}
		all += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, all, nil
}

// settle waits until the machine was busy less than frac of its time over one window,
// for at most limit, and says how long it waited and how busy the last window was. The
// kubelet and the container runtime go on removing a deleted namespace's containers and
// volumes after the API server has forgotten them; a run measured meanwhile would pay
// for the previous one, in wall time and CPU.
func settle(ctx context.Context, p procFS, window time.Duration, frac float64, limit time.Duration) (time.Duration, float64, error) {
	start := time.Now()
	busy0, all0, err := p.machineTicks()
	if err != nil {
		return 0, 0, err
	}
	for {
		select {
		case <-ctx.Done():
			return time.Since(start), 0, ctx.Err()
		case <-time.After(window):
		}
		busy, all, err := p.machineTicks()
		if err != nil {
			return 0, 0, err
		}
		got := 1.0
		if all > all0 {
			got = float64(busy-busy0) / float64(all-all0)
		}
		if got < frac || time.Since(start) >= limit {
			return time.Since(start), got, nil
		}
		busy0, all0 = busy, all
	}
}
