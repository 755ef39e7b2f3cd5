package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apisconfig "github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/kmeta"
	pkgreconciler "knative.dev/pkg/reconciler"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// fakeLog plays the kubelet serving the reporter container's log through pods/log:
// lines stamped by the container runtime, follow streams that deliver each line as it
// is printed and end once the container exited and they are drained, sinceTime,
// limitBytes, rotation (a new request serves the current file only; a follow stream
// goes on into the new file), and broken connections.
type fakeLog struct {
	mu      sync.Mutex
	lines   []string
	t       time.Time
	exited  bool
	wake    chan struct{}
	current int // the first line of the current file
	opens   []corev1.PodLogOptions
	// failFollow makes that many follow requests fail; hold stalls follow streams.
	failFollow int
	hold       bool
	streams    map[*io.PipeWriter]bool
	gone       bool
}

func newFakeLog() *fakeLog {
	return &fakeLog{t: t0, wake: make(chan struct{}), streams: map[*io.PipeWriter]bool{}}
}

func (l *fakeLog) changed() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// print writes a report line 10 ms after the previous one.
func (l *fakeLog) print(t *testing.T, rl plan.ReportLine) {
	t.Helper()
	b, err := json.Marshal(rl)
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t = l.t.Add(10 * time.Millisecond)
	l.lines = append(l.lines, l.t.Format(time.RFC3339Nano)+" "+string(b))
	l.changed()
}

func (l *fakeLog) exit() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exited = true
	l.changed()
}

// rotate starts a new file: later requests serve only what is printed from now on.
func (l *fakeLog) rotate() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.current = len(l.lines)
}

func (l *fakeLog) setHold(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hold = on
	l.changed()
}

// breakStreams cuts every open connection.
func (l *fakeLog) breakStreams() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for w := range l.streams {
		w.CloseWithError(errors.New("connection reset by peer"))
		delete(l.streams, w)
	}
	l.changed()
}

func (l *fakeLog) requests() []corev1.PodLogOptions {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]corev1.PodLogOptions(nil), l.opens...)
}

func (l *fakeLog) openStreams() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.streams)
}

func (l *fakeLog) Open(ctx context.Context, _ *corev1.Pod, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opens = append(l.opens, *opts)
	if l.gone {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "run-pod")
	}
	if opts.Container != plan.ReporterContainer || !opts.Timestamps {
		return nil, fmt.Errorf("unexpected options %+v", opts)
	}
	if opts.Follow && l.failFollow > 0 {
		l.failFollow--
		return nil, errors.New("connection refused")
	}
	pr, pw := io.Pipe()
	l.streams[pw] = true
	go l.serve(ctx, pw, *opts, l.current)
	return pr, nil
}

func (l *fakeLog) serve(ctx context.Context, pw *io.PipeWriter, opts corev1.PodLogOptions, i int) {
	defer func() {
		l.mu.Lock()
		delete(l.streams, pw)
		l.mu.Unlock()
	}()
	var written int64
	for {
		l.mu.Lock()
		lines, exited, wake, hold := l.lines[i:], l.exited, l.wake, l.hold && opts.Follow
		broken := !l.streams[pw]
		l.mu.Unlock()
		if broken {
			return
		}
		if !hold {
			for _, line := range lines {
				i++
				if ts, _ := plan.LineTime([]byte(line)); opts.SinceTime != nil && ts.Before(opts.SinceTime.Time) {
					continue
				}
				b := []byte(line + "\n")
				if opts.LimitBytes != nil && written+int64(len(b)) > *opts.LimitBytes {
					b = b[:*opts.LimitBytes-written]
				}
				if _, err := pw.Write(b); err != nil {
					return
				}
				written += int64(len(b))
				if opts.LimitBytes != nil && written >= *opts.LimitBytes {
					pw.Close()
					return
				}
			}
		}
		if !opts.Follow || (exited && !hold) {
			pw.Close()
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			pw.CloseWithError(ctx.Err())
			return
		}
	}
}

var followRun = types.NamespacedName{Namespace: ns, Name: "run"}

// reporterPod is a running pod of CustomRun "run" whose plan has tasks keys.
func reporterPod(t *testing.T, uid types.UID, keys ...string) *corev1.Pod {
	t.Helper()
	p := plan.Plan{}
	for _, k := range keys {
		p.Tasks = append(p.Tasks, plan.Task{Key: k, TaskRun: "run-" + k})
	}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "run-pod", Namespace: ns, UID: uid,
			Annotations:     map[string]string{plan.AnnotationPlan: enc},
			OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(newCustomRun("run"))},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: plan.ReporterContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
}

func exited(p *corev1.Pod) *corev1.Pod {
	p = p.DeepCopy()
	p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}
	return p
}

// followers makes Followers over log whose enqueues go to the returned channel.
func followers(t *testing.T, log *fakeLog) (*Followers, chan types.NamespacedName, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fs := NewFollowers(ctx, log, 20*time.Millisecond)
	queue := make(chan types.NamespacedName, 1000)
	fs.Enqueue = func(k types.NamespacedName) { queue <- k }
	t.Cleanup(func() {
		cancel()
		waitFor(t, "every follower to stop", func() bool {
			fs.mu.Lock()
			defer fs.mu.Unlock()
			return len(fs.runs) == 0
		})
	})
	return fs, queue, cancel
}

// newCheckedLog is a log whose every stream must be closed when the test ends.
func newCheckedLog(t *testing.T) *fakeLog {
	t.Helper()
	log := newFakeLog()
	t.Cleanup(func() { waitFor(t, "every stream to close", func() bool { return log.openStreams() == 0 }) })
	return log
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func phases(states map[string]plan.TaskState) map[string]plan.Phase {
	out := map[string]plan.Phase{}
	for k, s := range states {
		out[k] = s.Phase
	}
	return out
}

func read(t *testing.T, fs *Followers, pod *corev1.Pod) (map[string]plan.Phase, bool) {
	t.Helper()
	states, done, err := fs.Read(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	return phases(states), done
}

func drain(q chan types.NamespacedName) int {
	n := 0
	for {
		select {
		case <-q:
			n++
		default:
			return n
		}
	}
}

func taskLine(key string, p plan.Phase) plan.ReportLine {
	return plan.ReportLine{Task: &plan.TaskState{Key: key, Phase: p}}
}

// The first Read reads the log as it stands; then each new state line enqueues the
// run at once, and Reads return it without another request.
func TestFollowersFollow(t *testing.T) {
	log := newCheckedLog(t)
	fs, queue, _ := followers(t, log)
	// No poll of a Read's own during the test.
	fs.Interval = time.Minute
	pod := reporterPod(t, "uid-0", "a", "b")
	log.print(t, taskLine("a", plan.PhaseRunning))
	if got, _ := read(t, fs, pod); !cmp.Equal(got, map[string]plan.Phase{"a": plan.PhaseRunning}) {
		t.Fatalf("first read: %v", got)
	}
	waitFor(t, "the follow stream", func() bool { return log.openStreams() == 1 })
	drain(queue)
	requests := len(log.requests())

	printed := time.Now()
	log.print(t, taskLine("a", plan.PhaseSucceeded))
	select {
	case k := <-queue:
		if k != followRun {
			t.Errorf("enqueued %v", k)
		}
		// The issue asks for ~100 ms; on a loaded test machine allow more.
		if d := time.Since(printed); d > time.Second {
			t.Errorf("enqueued %v after the line was printed", d)
		} else {
			t.Logf("enqueued %v after the line was printed", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a new state line did not enqueue the run")
	}
	if got, _ := read(t, fs, pod); !cmp.Equal(got, map[string]plan.Phase{"a": plan.PhaseSucceeded}) {
		t.Errorf("after a's end: %v", got)
	}
	// A snapshot re-printing a's final state changes nothing: no enqueue.
	log.print(t, plan.ReportLine{Snapshot: []plan.TaskState{{Key: "a", Phase: plan.PhaseSucceeded}}})
	log.print(t, taskLine("b", plan.PhaseRunning))
	<-queue
	if n := drain(queue); n != 0 {
		t.Errorf("%d more enqueues", n)
	}
	if n := len(log.requests()); n != requests {
		t.Errorf("Reads made %d more requests", n-requests)
	}
	opts := log.requests()
	if !opts[0].Timestamps || opts[0].Follow || opts[0].LimitBytes == nil || *opts[0].LimitBytes != MaxLogReadBytes || !opts[1].Follow {
		t.Errorf("requests: %+v", opts)
	}
}

// A Read of a pod whose reporter exited returns every line it printed, even those the
// stream had not delivered yet, and ends the goroutine; later Reads make no request.
func TestFollowersReporterExit(t *testing.T) {
	log := newCheckedLog(t)
	fs, _, _ := followers(t, log)
	pod := reporterPod(t, "uid-0", "a")
	log.print(t, taskLine("a", plan.PhaseRunning))
	read(t, fs, pod)
	waitFor(t, "the follow stream", func() bool { return log.openStreams() == 1 })
	log.setHold(true)
	log.print(t, taskLine("a", plan.PhaseSucceeded))
	log.print(t, plan.ReportLine{Done: true})
	log.exit()
	got, done := read(t, fs, exited(pod))
	if !done || !cmp.Equal(got, map[string]plan.Phase{"a": plan.PhaseSucceeded}) {
		t.Errorf("after the reporter exited: %v, done %v", got, done)
	}
	requests := len(log.requests())
	log.setHold(false)
	waitFor(t, "the follow stream to end", func() bool { return log.openStreams() == 0 })
	read(t, fs, exited(pod))
	if n := len(log.requests()); n != requests {
		t.Errorf("%d requests after the log was read to its end", n-requests)
	}
}

// A broken stream is resumed from the second of the last line folded; the lines it
// serves again change nothing (no enqueue), and what is new arrives.
func TestFollowersResume(t *testing.T) {
	log := newCheckedLog(t)
	fs, queue, _ := followers(t, log)
	pod := reporterPod(t, "uid-0", "a", "b")
	log.print(t, taskLine("a", plan.PhaseRunning))
	read(t, fs, pod)
	waitFor(t, "the follow stream", func() bool { return log.openStreams() == 1 })
	log.print(t, taskLine("a", plan.PhaseSucceeded))
	<-queue
	log.breakStreams()
	waitFor(t, "a new follow stream", func() bool {
		opts := log.requests()
		return len(opts) >= 3 && log.openStreams() == 1
	})
	if n := drain(queue); n != 0 {
		t.Errorf("lines served again enqueued the run %d times", n)
	}
	opts := log.requests()
	last := opts[len(opts)-1]
	if !last.Follow || last.SinceTime == nil || !last.SinceTime.Time.Equal(t0) {
		t.Errorf("resumed with %+v, want follow from %v", last, t0)
	}
	log.print(t, taskLine("b", plan.PhaseRunning))
	<-queue
	if got, _ := read(t, fs, pod); !cmp.Equal(got, map[string]plan.Phase{"a": plan.PhaseSucceeded, "b": plan.PhaseRunning}) {
		t.Errorf("states: %v", got)
	}
}

// Rotation: a follower keeps what the rotated file held; a controller that starts
// after the rotation reads the current file only, and finds the final states there in
// the snapshot the reporter printed since.
func TestFollowersRotation(t *testing.T) {
	log := newCheckedLog(t)
	fs, queue, _ := followers(t, log)
	pod := reporterPod(t, "uid-0", "a", "b")
	log.print(t, taskLine("a", plan.PhaseSucceeded))
	read(t, fs, pod)
	waitFor(t, "the follow stream", func() bool { return log.openStreams() == 1 })
	log.rotate()
	log.print(t, taskLine("b", plan.PhaseRunning))
	<-queue
	want := map[string]plan.Phase{"a": plan.PhaseSucceeded, "b": plan.PhaseRunning}
	if got, _ := read(t, fs, pod); !cmp.Equal(got, want) {
		t.Errorf("following across the rotation: %v", got)
	}

	restarted, _, _ := followers(t, log)
	if got, _ := read(t, restarted, pod); !cmp.Equal(got, map[string]plan.Phase{"b": plan.PhaseRunning}) {
		t.Fatalf("the current file alone: %v", got)
	}
	log.print(t, plan.ReportLine{Snapshot: []plan.TaskState{{Key: "a", Phase: plan.PhaseSucceeded}}})
	waitFor(t, "the snapshot", func() bool {
		got, _ := read(t, restarted, pod)
		return cmp.Equal(got, want)
	})
}

// Poll fallback: when the log cannot be followed, each Read reads what is new.
func TestFollowersPollFallback(t *testing.T) {
	log := newCheckedLog(t)
	log.failFollow = 1 << 30
	fs, _, _ := followers(t, log)
	pod := reporterPod(t, "uid-0", "a")
	log.print(t, taskLine("a", plan.PhaseRunning))
	read(t, fs, pod)
	log.print(t, taskLine("a", plan.PhaseSucceeded))
	if got, _ := read(t, fs, pod); !cmp.Equal(got, map[string]plan.Phase{"a": plan.PhaseSucceeded}) {
		t.Errorf("polled: %v", got)
	}
	var polls int
	for _, o := range log.requests() {
		if !o.Follow {
			polls++
		}
	}
	if polls != 2 {
		t.Errorf("%d reads without follow, want one per Read", polls)
	}
}

// A stream that hangs without an error does not hide new lines for long: ten intervals
// after its last read of its own, a Read reads the log itself.
func TestFollowersHungStream(t *testing.T) {
	log := newCheckedLog(t)
	fs, _, _ := followers(t, log)
	pod := reporterPod(t, "uid-0", "a")
	log.print(t, taskLine("a", plan.PhaseRunning))
	read(t, fs, pod)
	waitFor(t, "the follow stream", func() bool { return log.openStreams() == 1 })
	log.setHold(true)
	log.print(t, taskLine("a", plan.PhaseSucceeded))
	time.Sleep(fs.pollEvery())
	if got, _ := read(t, fs, pod); !cmp.Equal(got, map[string]plan.Phase{"a": plan.PhaseSucceeded}) {
		t.Errorf("behind a hung stream: %v", got)
	}
}

// The goroutine of a follower never outlives its run, the replica's leadership of it,
// its pod (a new attempt's pod replaces it), or the Followers.
func TestFollowersStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(fs *Followers, log *fakeLog, cancel context.CancelFunc, leading *atomic.Bool)
	}{{
		name: "forget",
		stop: func(fs *Followers, _ *fakeLog, _ context.CancelFunc, _ *atomic.Bool) { fs.Forget(followRun) },
	}, {
		name: "demoted",
		stop: func(fs *Followers, _ *fakeLog, _ context.CancelFunc, _ *atomic.Bool) {
			fs.Demote(pkgreconciler.UniversalBucket())
		},
	}, {
		name: "no longer leader",
		stop: func(_ *Followers, _ *fakeLog, _ context.CancelFunc, leading *atomic.Bool) { leading.Store(false) },
	}, {
		name: "pod deleted",
		stop: func(_ *Followers, log *fakeLog, _ context.CancelFunc, _ *atomic.Bool) {
			log.mu.Lock()
			log.gone = true
			log.mu.Unlock()
			log.breakStreams()
		},
	}, {
		name: "controller stops",
		stop: func(_ *Followers, _ *fakeLog, cancel context.CancelFunc, _ *atomic.Bool) { cancel() },
	}, {
		name: "a new attempt's pod",
		stop: func(fs *Followers, _ *fakeLog, _ context.CancelFunc, _ *atomic.Bool) {
			if _, _, err := fs.Read(context.Background(), exited(reporterPod(&testing.T{}, "uid-1", "a"))); err != nil {
				panic(err)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			log := newCheckedLog(t)
			fs, _, cancel := followers(t, log)
			var leading atomic.Bool
			leading.Store(true)
			fs.IsLeader = func(types.NamespacedName) bool { return leading.Load() }
			log.print(t, taskLine("a", plan.PhaseRunning))
			read(t, fs, reporterPod(t, "uid-0", "a"))
			waitFor(t, "the follow stream", func() bool { return log.openStreams() == 1 })
			fs.mu.Lock()
			f := fs.runs[followRun]
			fs.mu.Unlock()
			tc.stop(fs, log, cancel, &leading)
			select {
			case <-f.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the follower's goroutine did not end")
			}
			waitFor(t, "the stream to close", func() bool { return log.openStreams() == 0 })
		})
	}
}

// Memory is bounded whatever the reporter's log holds: a line over the bound fails its
// task, naming it, and is not kept.
func TestFollowersBoundLines(t *testing.T) {
	log := newCheckedLog(t)
	fs, _, _ := followers(t, log)
	pod := reporterPod(t, "uid-0", "a", "b")
	log.print(t, plan.ReportLine{Task: &plan.TaskState{Key: "a", Phase: plan.PhaseSucceeded, Message: strings.Repeat("x", 2*plan.MaxReportBytes)}})
	log.print(t, taskLine("b", plan.PhaseRunning))
	states, _, err := fs.Read(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if a := states["a"]; a.Reason != plan.ReasonResultLargerThanAllowedLimit || !strings.HasPrefix(a.Message, `task "a": its reported state is `) {
		t.Errorf("a = %s %q", a.Reason, a.Message[:min(len(a.Message), 200)])
	}
	if states["b"].Phase != plan.PhaseRunning {
		t.Errorf("b = %+v", states["b"])
	}
}

// The reporter's log is read with Tekton's max-result-size: its default, or what the
// feature flags in the reconcile's context say.
func TestLimitsFollowMaxResultSize(t *testing.T) {
	if got := limitsFor(context.Background()).MaxResultSize; got != apisconfig.DefaultMaxResultSize {
		t.Errorf("default max-result-size %d, want Tekton's %d", got, apisconfig.DefaultMaxResultSize)
	}
	ctx := apisconfig.ToContext(context.Background(), &apisconfig.Config{FeatureFlags: &apisconfig.FeatureFlags{MaxResultSize: 8192}})
	if got := limitsFor(ctx).MaxResultSize; got != 8192 {
		t.Errorf("configured max-result-size read as %d", got)
	}
}

// A task whose result is over max-result-size fails with Tekton's reason, naming the
// task and the result; the run fails with it. Read through the Followers, as the
// controller reads the reporter's log.
func TestResultOverMaxResultSize(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA, taskB)
	log := newCheckedLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h.r.Reports = NewFollowers(ctx, log, time.Minute)
	h.reconcile()
	h.setPod(0, running)
	big := result("out", strings.Repeat("x", apisconfig.DefaultMaxResultSize))
	log.print(t, plan.ReportLine{Task: &plan.TaskState{Key: "a", Phase: plan.PhaseSucceeded, Reason: "Succeeded", Results: []v1.TaskRunResult{big}}})
	b := finalState(taskB, plan.PhaseSucceeded, "Succeeded", 0, time.Second)
	log.print(t, plan.ReportLine{Task: &b})
	log.print(t, plan.ReportLine{Done: true})
	h.reconcile()
	want := view{Condition: "False/Failed", TaskRuns: map[string]string{"a": "False/TaskRunResultLargerThanAllowedLimit", "b": "True/Succeeded"}, Pods: pods0}
	if diff := cmp.Diff(want, h.view()); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
	c := h.taskRun("a").Status.GetCondition(apis.ConditionSucceeded)
	if c.Message != `task "a": result "out" is 4137 bytes, over the max-result-size of 4096 bytes` || len(h.taskRun("a").Status.Results) != 0 {
		t.Errorf("a: %q, results %v", c.Message, h.taskRun("a").Status.Results)
	}
}
