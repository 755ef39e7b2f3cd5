package reconciler

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"sync"
	"time"

	apisconfig "github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"
	pkgreconciler "knative.dev/pkg/reconciler"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// LogSource opens the reporter container's log of a pod.
type LogSource interface {
	Open(ctx context.Context, pod *corev1.Pod, opts *corev1.PodLogOptions) (io.ReadCloser, error)
}

// PodLogs is the LogSource of a cluster: the pods/log API.
type PodLogs struct {
	KubeClient kubernetes.Interface
}

// Open implements LogSource.
func (s PodLogs) Open(ctx context.Context, pod *corev1.Pod, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	return s.KubeClient.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, opts).Stream(ctx)
}

// MaxLogReadBytes bounds one request for the reporter's log (pods/log limitBytes). The
// log the kubelet serves is one file of at most its containerLogMaxSize (10 MiB by
// default); a stream that reaches the bound is resumed where it stopped.
const MaxLogReadBytes = 64 << 20

// limitsFor are the bounds the reporter's log is read with: Tekton's max-result-size as
// configured (its default without a config store), and plan.MaxReportBytes per run.
func limitsFor(ctx context.Context) plan.Limits {
	return plan.Limits{MaxResultSize: apisconfig.FromContextOrDefaults(ctx).FeatureFlags.MaxResultSize}
}

// Followers is the ReportReader of the controller: it follows the reporter's log of
// every running pod (docs/design.md, "The results channel").
//
// The first Read of a pod reads the log as it stands (synchronously, so the reconcile
// sees every state printed so far) and starts a goroutine that follows the log from
// there (pods/log follow=true): each line that changes a task's state, or brings the
// final marker, enqueues the pod's CustomRun at once, instead of waiting for the next
// requeue. Later Reads return what was folded, without a request. A Read that finds the
// stream down (the goroutine reconnects with a backoff) reads what is new itself: the
// periodic requeue then polls, as the controller did before following logs. A Read of a
// pod whose reporter has exited stops the goroutine and reads the log to its end.
//
// Each read resumes after the last line folded: lines carry the container runtime's
// timestamps (timestamps=true), a request asks from the second of the last one
// (sinceTime) and lines already folded are skipped, so no state flaps back while a
// stream catches up. The states are kept per run, in a plan.Folder (bounded memory,
// whatever the pod prints), for the pod of the run's current attempt only. A follower
// ends with its run (Forget), with the controller's leadership of the run (Demote, and
// a periodic check), when nobody read it for a while, and with the context the
// Followers were made with.
type Followers struct {
	Source LogSource
	// Enqueue asks for a reconcile of a CustomRun (the controller's EnqueueKey).
	Enqueue func(types.NamespacedName)
	// IsLeader tells whether this replica reconciles a CustomRun; nil: always.
	IsLeader func(types.NamespacedName) bool
	// Interval bounds the reconnect backoff and paces the leadership check: the
	// controller's requeue interval.
	Interval time.Duration

	// root is the controller's context: followers outlive the reconcile that starts them.
	root    context.Context //nolint:containedctx // their goroutines end with it
	mu      sync.Mutex
	runs    map[types.NamespacedName]*follower
	janitor sync.Once
}

// NewFollowers makes the Followers of a controller; ctx ends them all.
func NewFollowers(ctx context.Context, src LogSource, interval time.Duration) *Followers {
	return &Followers{Source: src, Interval: interval, root: ctx, runs: map[types.NamespacedName]*follower{}}
}

var _ ReportReader = (*Followers)(nil)

// follower is one pod's log being followed.
type follower struct {
	run types.NamespacedName
	pod *corev1.Pod

	mu       sync.Mutex
	folder   *plan.Folder
	cur      cursor
	lastRead time.Time
	// lastPoll is when a Read last read the log itself.
	lastPoll time.Time
	// streaming: a follow stream is open. ended: the reporter exited and its log was
	// read to the end; nothing more will come. stopped: forgotten; no goroutine may
	// start any more.
	streaming, ended, stopped bool

	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine returned; nil before it starts
}

// cursor is where a fold stands in the log: the timestamp of the last line folded and
// the lines folded at that very timestamp.
type cursor struct {
	at    time.Time
	lines map[uint64]bool
}

func lineHash(line []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(line)
	return h.Sum64()
}

// seen tells whether a line stamped ts was folded already.
func (c *cursor) seen(ts time.Time, line []byte) bool {
	return ts.Before(c.at) || (ts.Equal(c.at) && c.lines[lineHash(line)])
}

func (c *cursor) advance(ts time.Time, line []byte) {
	if ts.After(c.at) || c.lines == nil {
		c.at, c.lines = ts, map[uint64]bool{}
	}
	c.lines[lineHash(line)] = true
}

// since is where a request resumes: the second of the last line folded (sinceTime
// has whole seconds), nil to read from the start.
func (c *cursor) since() *metav1.Time {
	if c.at.IsZero() {
		return nil
	}
	return &metav1.Time{Time: c.at.Truncate(time.Second)}
}

// runOf is the CustomRun that owns a pod.
func runOf(pod *corev1.Pod) (types.NamespacedName, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "CustomRun" || ref.APIVersion != v1beta1.SchemeGroupVersion.String() {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}, true
}

// reporterEnded tells whether the reporter container will print nothing more.
func reporterEnded(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return true
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == plan.ReporterContainer {
			return cs.State.Terminated != nil
		}
	}
	return false
}

// Read implements ReportReader.
func (fs *Followers) Read(ctx context.Context, pod *corev1.Pod) (map[string]plan.TaskState, bool, error) {
	run, ok := runOf(pod)
	if !ok {
		return PodLogReports{Source: fs.Source}.Read(ctx, pod)
	}
	f, err := fs.follower(ctx, run, pod)
	if err != nil {
		return nil, false, err
	}
	ended := reporterEnded(pod)
	now := time.Now()
	f.mu.Lock()
	f.lastRead = now
	// A stream can also hang without an error (a connection lost without a reset):
	// now and then a Read looks for itself.
	streamed := f.streaming && now.Sub(f.lastPoll) < fs.pollEvery()
	current := f.ended || (f.folder.Done() && ended) || (streamed && !ended)
	f.mu.Unlock()
	if !current {
		if ended {
			// What the goroutine has not read yet is in the file, which no longer
			// changes: read it to its end here.
			f.pause()
		}
		if err := fs.catchUp(ctx, f); err != nil {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.folder.States(), f.folder.Done(), err
		}
		f.mu.Lock()
		f.ended, f.lastPoll = ended, now
		f.mu.Unlock()
		if !ended {
			fs.start(f)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.folder.States(), f.folder.Done(), nil
}

// follower returns the run's follower for pod, a new one (replacing one of an earlier
// attempt's pod) when there is none.
func (fs *Followers) follower(ctx context.Context, run types.NamespacedName, pod *corev1.Pod) (*follower, error) {
	fs.mu.Lock()
	old := fs.runs[run]
	if old != nil && old.pod.UID == pod.UID {
		fs.mu.Unlock()
		return old, nil
	}
	delete(fs.runs, run)
	fs.mu.Unlock()
	if old != nil {
		old.stop()
	}
	p, _, err := planOf(pod)
	if err != nil {
		return nil, err
	}
	f := &follower{run: run, pod: pod.DeepCopy(), folder: p.NewFolder(limitsFor(ctx)), lastRead: time.Now()}
	fs.mu.Lock()
	fs.runs[run] = f
	fs.mu.Unlock()
	fs.janitor.Do(func() { go fs.sweep() })
	return f, nil
}

// catchUp reads what the log holds beyond what f folded, to its end.
func (fs *Followers) catchUp(ctx context.Context, f *follower) error {
	// Each request reads up to MaxLogReadBytes; a log is one file of the kubelet's.
	for range 16 {
		f.mu.Lock()
		since, before := f.cur.since(), f.cur.at
		f.mu.Unlock()
		n, err := fs.read(ctx, f, &corev1.PodLogOptions{Container: plan.ReporterContainer, Timestamps: true, SinceTime: since, LimitBytes: ptr.To[int64](MaxLogReadBytes)})
		if err != nil {
			return err
		}
		f.mu.Lock()
		moved := f.cur.at.After(before)
		f.mu.Unlock()
		if n < MaxLogReadBytes || !moved {
			return nil
		}
	}
	return nil
}

// read folds the lines of one request for the log into f and returns how many bytes it
// read. On a follow stream, each line that changes f enqueues its run (a Read's own
// requests need not: its reconcile is the one looking).
func (fs *Followers) read(ctx context.Context, f *follower, opts *corev1.PodLogOptions) (int64, error) {
	rc, err := fs.Source.Open(ctx, f.pod, opts)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if opts.Follow {
		f.setStreaming(true)
		defer f.setStreaming(false)
	}
	counted := &countingReader{r: rc}
	lr := f.folder.NewLineReader(counted)
	for {
		line, n, complete, err := lr.Next()
		// A line cut short comes again, whole, from the next request.
		if complete && f.fold(line, n) && opts.Follow && fs.Enqueue != nil {
			fs.Enqueue(f.run)
		}
		if errors.Is(err, io.EOF) {
			return counted.n, nil
		}
		if err != nil {
			return counted.n, err
		}
	}
}

// fold folds one line unless it was folded already; it reports whether f changed.
func (f *follower) fold(line []byte, n int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	ts, stamped := plan.LineTime(line)
	if stamped && f.cur.seen(ts, line) {
		return false
	}
	changed := f.folder.Line(line, n)
	if stamped {
		f.cur.advance(ts, line)
	}
	return changed
}

func (f *follower) setStreaming(on bool) {
	f.mu.Lock()
	f.streaming = on
	f.mu.Unlock()
}

// start runs f's goroutine, unless it runs or f was stopped: it follows the log,
// reconnecting with a backoff, until stopped or the pod is gone.
func (fs *Followers) start(f *follower) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped || f.done != nil && !closed(f.done) {
		return
	}
	ctx, cancel := context.WithCancel(fs.root)
	f.cancel, f.done = cancel, make(chan struct{})
	go fs.follow(ctx, f, f.done)
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (fs *Followers) follow(ctx context.Context, f *follower, done chan struct{}) {
	defer close(done)
	logger := logging.FromContext(ctx).With("customrun", f.run.String(), "pod", f.pod.Name)
	backoff := fs.minBackoff()
	for ctx.Err() == nil {
		f.mu.Lock()
		since := f.cur.since()
		f.mu.Unlock()
		n, err := fs.read(ctx, f, &corev1.PodLogOptions{Container: plan.ReporterContainer, Follow: true, Timestamps: true, SinceTime: since, LimitBytes: ptr.To[int64](MaxLogReadBytes)})
		switch {
		case ctx.Err() != nil:
			return
		case apierrors.IsNotFound(err):
			return
		case err != nil:
			logger.Debugw("Following the reporter's log", "error", err)
		case n >= MaxLogReadBytes:
			// The request's bound, not the log's end: go on at once.
			continue
		}
		// The stream ended: the reporter exited (Read then reads the rest), or the
		// connection was lost.
		if n > 0 {
			backoff = fs.minBackoff()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, fs.interval())
	}
}

// stop ends f's goroutine for good and waits for it.
func (f *follower) stop() {
	f.mu.Lock()
	f.stopped = true
	cancel, done := f.cancel, f.done
	f.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// pause ends f's goroutine and waits for it; a later Read may start another.
func (f *follower) pause() {
	f.mu.Lock()
	cancel, done := f.cancel, f.done
	f.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (fs *Followers) interval() time.Duration {
	if fs.Interval > 0 {
		return fs.Interval
	}
	return DefaultRequeueInterval
}

func (fs *Followers) minBackoff() time.Duration { return min(100*time.Millisecond, fs.interval()) }

// pollEvery is how often a Read reads the log itself even while it is followed.
func (fs *Followers) pollEvery() time.Duration { return 10 * fs.interval() }

// Forget stops following a run's pod and drops what was read: the run is over.
func (fs *Followers) Forget(run types.NamespacedName) {
	fs.mu.Lock()
	f := fs.runs[run]
	delete(fs.runs, run)
	fs.mu.Unlock()
	if f != nil {
		f.stop()
	}
}

// Demote forgets the runs of a bucket this replica no longer leads.
func (fs *Followers) Demote(b pkgreconciler.Bucket) {
	fs.drop(func(run types.NamespacedName, _ *follower) bool { return b.Has(run) })
}

// drop forgets the runs gone says so of.
func (fs *Followers) drop(gone func(types.NamespacedName, *follower) bool) {
	var stopped []*follower
	fs.mu.Lock()
	for run, f := range fs.runs {
		if gone(run, f) {
			delete(fs.runs, run)
			stopped = append(stopped, f)
		}
	}
	fs.mu.Unlock()
	for _, f := range stopped {
		f.stop()
	}
}

// idleAfter is how long a follower nobody reads lives on: its run is no longer
// reconciled here (deleted, or led by another replica) though nothing said so.
func (fs *Followers) idleAfter() time.Duration { return max(time.Minute, 20*fs.interval()) }

// sweep forgets, every interval, the runs this replica no longer leads and the
// followers nobody read for idleAfter, until the Followers' context ends.
func (fs *Followers) sweep() {
	t := time.NewTicker(fs.interval())
	defer t.Stop()
	for {
		select {
		case <-fs.root.Done():
			fs.drop(func(types.NamespacedName, *follower) bool { return true })
			return
		case now := <-t.C:
			fs.drop(func(run types.NamespacedName, f *follower) bool {
				f.mu.Lock()
				idle := now.Sub(f.lastRead) > fs.idleAfter()
				f.mu.Unlock()
				return idle || (fs.IsLeader != nil && !fs.IsLeader(run))
			})
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// follow lets the Reconciler's Followers enqueue runs through impl and ask it who leads.
func (r *Reconciler) follow(impl *controller.Impl) {
	fs, ok := r.Reports.(*Followers)
	if !ok {
		return
	}
	fs.Enqueue = impl.EnqueueKey
	if la, ok := impl.Reconciler.(interface {
		IsLeaderFor(types.NamespacedName) bool
	}); ok {
		fs.IsLeader = la.IsLeaderFor
	}
}

// demote drops what the Reconciler keeps in memory of the runs of a bucket this
// replica no longer leads (the controller's DemoteFunc).
func (r *Reconciler) demote(b pkgreconciler.Bucket) {
	if fs, ok := r.Reports.(*Followers); ok {
		fs.Demote(b)
	}
	r.written.demote(b)
}

// forget drops what the Reconciler keeps in memory of a run that is over.
func (r *Reconciler) forget(cr *v1beta1.CustomRun) {
	if f, ok := r.Reports.(interface{ Forget(types.NamespacedName) }); ok {
		f.Forget(runKey(cr))
	}
	r.written.forget(runKey(cr))
}
