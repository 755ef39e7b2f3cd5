package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

func TestMedian(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3 * s}, 3 * s},
		{[]time.Duration{5 * s, 1 * s, 3 * s}, 3 * s},
		{[]time.Duration{4 * s, 1 * s, 3 * s, 2 * s}, 2500 * time.Millisecond},
		// A phase not seen in a run (0) is left out.
		{[]time.Duration{0, 4 * s, 2 * s}, 3 * s},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := medianFloat([]float64{0.5, 0.1, 0.3, 0.9}); got != 0.4 {
		t.Errorf("medianFloat = %v", got)
	}
}

func TestParseStat(t *testing.T) {
	// A command with spaces and parentheses, as proc(5) allows.
	line := "4242 (kube (api) server) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 10 5 20 0 30 0 123456 0 0 18446744073709551615\n"
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 1 || st.ticks != 250+75+10+5 || st.starttime != "123456" {
		t.Errorf("parseStat = %+v", st)
	}
	if _, err := parseStat("4242 (x) S 1"); err == nil {
		t.Error("a short line parsed")
	}
	pid, start, err := parsePidFile("23974 1201545\n")
	if err != nil || pid != 23974 || start != "1201545" {
		t.Errorf("parsePidFile = %d %q %v", pid, start, err)
	}
	if _, _, err := parsePidFile("23974"); err == nil {
		t.Error("a pid file without start time parsed")
	}
}

func TestInPod(t *testing.T) {
	uid := "0b6d4f1e-1111-2222-3333-444455556666"
	for cg, want := range map[string]bool{
		"0::/kubepods/burstable/pod" + uid + "/abc": true,
		"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b6d4f1e_1111_2222_3333_444455556666.slice/cri-x": true,
		"0::/system.slice/containerd.service": false,
	} {
		if got := inPod(cg, uid); got != want {
			t.Errorf("inPod(%q) = %v", cg, got)
		}
	}
}

// fakeProc lays out a /proc: pid → stat line, cmdline, cgroup.
func fakeProc(t *testing.T, procs map[int][3]string) procFS {
	t.Helper()
	root := t.TempDir()
	for pid, files := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, name := range []string{"stat", "cmdline", "cgroup"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(files[i]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return procFS{root: root}
}

func stat(pid, ppid, utime, stime int, start string) string {
	f := []string{strconv.Itoa(pid), "(p)", "S", strconv.Itoa(ppid)}
	for i := 5; i <= 21; i++ {
		f = append(f, "0")
	}
	f[13], f[14] = strconv.Itoa(utime), strconv.Itoa(stime)
	return strings.Join(append(f, start, "0"), " ")
}

// The components' CPU: a pid file's daemon with its children, the shims by command,
// a controller by its pod's cgroup; what ran between two samples.
func TestSampleCPU(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"kube-apiserver": "10 555", "etcd": "20 999" /* a recycled pid */} {
		if err := os.MkdirAll(filepath.Join(dir, "run", "pids"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "run", "pids", name+".pid"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	uid := "0b6d4f1e-1111-2222-3333-444455556666"
	procs := func(apiserver, child, shim, ctrl int) procFS {
		return fakeProc(t, map[int][3]string{
			10: {stat(10, 1, apiserver, 0, "555"), "/bin/kube-apiserver\x00--x", "0::/"},
			11: {stat(11, 10, child, 0, "600"), "/bin/helper", "0::/"},
			20: {stat(20, 1, 1000, 0, "777"), "etcd", "0::/"},
			30: {stat(30, 1, shim, 0, "800"), "/usr/bin/containerd-shim-runc-v2\x00-id", "0::/"},
			40: {stat(40, 30, ctrl, 0, "900"), "/ko-app/controller", "0::/kubepods/pod" + uid + "/c1"},
		})
	}
	kube := k8sfake.NewSimpleClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: "ctrl", Namespace: "pipelineinpod", UID: "0b6d4f1e-1111-2222-3333-444455556666",
		Labels: map[string]string{"app.kubernetes.io/name": "controller", "app.kubernetes.io/part-of": "pipelineinpod"},
	}})
	cs := components(kube, dir)
	ctx := context.Background()
	before := sampleCPU(ctx, procs(100, 50, 10, 300), cs)
	after := sampleCPU(ctx, procs(150, 75, 30, 500), cs)
	want := map[string]float64{"apiserver": 0.75, "containerd": 0.2, "pip-controller": 2}
	if diff := cmp.Diff(want, cpuSeconds(before, after)); diff != "" {
		t.Errorf("CPU-seconds (-want +got)\n%s", diff)
	}
}

func TestLastTaskEnded(t *testing.T) {
	log := strings.Join([]string{
		`2026-01-02T03:04:05.100000000Z {"task":{"key":"a","phase":"Running"}}`,
		`2026-01-02T03:04:05.200000000Z {"task":{"key":"a","phase":"Succeeded"}}`,
		`2026-01-02T03:04:05.300000000Z {"task":{"key":"b","phase":"Running"}}`,
		`2026-01-02T03:04:05.450000000Z {"task":{"key":"b","phase":"Failed"}}`,
		// A snapshot, and a terminal state printed again, are not ends.
		`2026-01-02T03:04:06.000000000Z {"snapshot":[{"key":"a","phase":"Succeeded"},{"key":"b","phase":"Failed"}]}`,
		`2026-01-02T03:04:06.100000000Z {"task":{"key":"a","phase":"Succeeded"}}`,
		`2026-01-02T03:04:06.200000000Z {"done":true}`,
	}, "\n")
	got, ok := lastTaskEnded(log)
	if !ok || got.Format(time.RFC3339Nano) != "2026-01-02T03:04:05.45Z" {
		t.Errorf("lastTaskEnded = %v %v", got, ok)
	}
	if _, ok := lastTaskEnded("no timestamps\n"); ok {
		t.Error("an end from a log without one")
	}
}

func TestPipelines(t *testing.T) {
	seq := sequential(3)
	if len(seq.Tasks) != 3 || len(seq.Tasks[0].RunAfter) != 0 || seq.Tasks[2].RunAfter[0] != "t2" {
		t.Errorf("sequential: %+v", seq.Tasks)
	}
	fan := fanOut(4)
	if len(fan.Tasks) != 5 || len(fan.Tasks[4].RunAfter) != 4 {
		t.Errorf("fanOut: %+v", fan.Tasks)
	}
	if p := floorPod(21); len(p.Spec.Containers) != 21 || p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("floor pod: %d containers", len(p.Spec.Containers))
	}
	got := selectScenarios(allScenarios(), "seq50,fan20")
	if len(got) != 2 || got[0].key != "fan20" || got[1].tasks() != 50 {
		t.Errorf("selectScenarios: %+v", got)
	}
}

func TestReport(t *testing.T) {
	s := time.Second
	results := map[string][]sample{
		"seq5/pip":    {{end: 4 * s, phases: phases{podCreated: s / 10, podRunning: s, lastTaskEnded: 3900 * time.Millisecond}, cpu: map[string]float64{"apiserver": 1, "pip-controller": 0.5}}},
		"seq5/floor":  {{end: 3 * s, phases: phases{podCreated: s / 20, podRunning: s, lastTaskEnded: 2900 * time.Millisecond}, cpu: map[string]float64{"apiserver": 0.5}}},
		"seq5/tekton": {{end: 16 * s, cpu: map[string]float64{"apiserver": 4, "tekton-controller": 2}}},
		"seq5/pod":    {{end: 3300 * time.Millisecond, phases: phases{podCreated: s / 20, lastTaskEnded: 3 * s}, cpu: map[string]float64{"apiserver": 0.6}}},
	}
	got := report(allScenarios()[:1], results, 1)
	for _, want := range []string{
		"scenario                   tasks  PipelineInPod  floor pod  Tekton  PiP/floor  PiP/Tekton  CPU-s PiP  CPU-s floor  CPU-s Tekton  CPU PiP/Tekton  pod alone  pod alone/floor\n" +
			"seq5 (5 sequential tasks)  5      4.00s          3.00s      16.00s  1.33       0.25        1.50       0.50         6.00          0.25            3.30s      1.10\n",
		"seq5/pip     0.10s        1.00s        3.90s            4.00s\n" +
			"seq5/pod     0.05s        -            3.00s            3.30s\n" +
			"seq5/floor   0.05s        1.00s        2.90s            3.00s\n",
		"seq5/tekton  -            -            -                16.00s\n",
		"seq5/pip     1.00       -     -        -           -                  0.50\n",
		"  seq5/floor    3.00\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q:\n%s", want, got)
		}
	}
}

func TestAloneCopy(t *testing.T) {
	token := corev1.VolumeMount{Name: "kube-api-access-x1", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}
	state := corev1.VolumeMount{Name: "pip-state", MountPath: "/tekton/pip/state"}
	run := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "run-pod", Namespace: "ns", Labels: map[string]string{"tekton.dev/customRun": "run"},
			Annotations:     map[string]string{"tekton.dev/ready": "READY"},
			OwnerReferences: []metav1.OwnerReference{{Name: "run"}},
		},
		Spec: corev1.PodSpec{
			NodeName:       "node",
			Volumes:        []corev1.Volume{{Name: "pip-state"}, {Name: "kube-api-access-x1"}},
			InitContainers: []corev1.Container{{Name: "place-scripts", VolumeMounts: []corev1.VolumeMount{state, token}}},
			Containers:     []corev1.Container{{Name: "step-pip-reporter", VolumeMounts: []corev1.VolumeMount{state, token}}},
		},
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Annotations: map[string]string{"tekton.dev/ready": "READY"}},
		Spec: corev1.PodSpec{
			Volumes:        []corev1.Volume{{Name: "pip-state"}},
			InitContainers: []corev1.Container{{Name: "place-scripts", VolumeMounts: []corev1.VolumeMount{state}}},
			Containers:     []corev1.Container{{Name: "step-pip-reporter", VolumeMounts: []corev1.VolumeMount{state}}},
		},
	}
	got := aloneCopy(run)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("aloneCopy (-want +got):\n%s", d)
	}
	if !hasContainer(got, plan.ReporterContainer) || hasContainer(floorPod(2), plan.ReporterContainer) {
		t.Error("hasContainer: the reporter")
	}
	if len(run.Spec.Containers[0].VolumeMounts) != 2 {
		t.Error("aloneCopy changed the run's pod")
	}
}

func TestMachineTicks(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte("cpu  100 5 50 800 45 1 2 3 0 0\ncpu0 50 2 25 400 20 0 1 1 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy, all, err := procFS{root: root}.machineTicks()
	if err != nil || busy != 161 || all != 1006 {
		t.Errorf("machineTicks = %d, %d, %v; want 161, 1006", busy, all, err)
	}
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte("intr 1 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := (procFS{root: root}).machineTicks(); err == nil {
		t.Error("no error without a cpu line")
	}
}

func TestSettle(t *testing.T) {
	root := t.TempDir()
	// Replaced whole, as the kernel's file reads, for the settle reading it meanwhile.
	write := func(busy, idle int) {
		tmp := filepath.Join(root, "stat.tmp")
		if err := os.WriteFile(tmp, []byte("cpu  "+strconv.Itoa(busy)+" 0 0 "+strconv.Itoa(idle)+" 0 0 0 0\n"), 0o644); err != nil {
			t.Error(err)
		}
		if err := os.Rename(tmp, filepath.Join(root, "stat")); err != nil {
			t.Error(err)
		}
	}
	p := procFS{root: root}
	// ticking advances the machine's ticks every 2 ms, busy or idle, until settle returns.
	ticking := func(busy bool, run func()) {
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
					if busy {
						write(10*i, 0)
					} else {
						write(i, 10*i)
					}
				}
			}
		}()
		run()
		close(stop)
		<-stopped
	}
	// Fully busy: settle gives up at its limit and says how busy the machine was.
	write(0, 0)
	ticking(true, func() {
		waited, level, err := settle(context.Background(), p, 10*time.Millisecond, 0.15, 50*time.Millisecond)
		if err != nil || waited < 50*time.Millisecond || level < 0.99 {
			t.Errorf("busy machine: settle = %v, %.2f, %v", waited, level, err)
		}
	})
	// Idle: settle returns after one window.
	write(0, 0)
	ticking(false, func() {
		waited, level, err := settle(context.Background(), p, 10*time.Millisecond, 0.15, time.Second)
		if err != nil || waited >= time.Second || level >= 0.15 {
			t.Errorf("idle machine: settle = %v, %.2f, %v", waited, level, err)
		}
	})
}
