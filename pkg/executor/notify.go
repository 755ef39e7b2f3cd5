package executor

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// safetyInterval bounds a wait that relies on inotify, should an event be lost (a
// filesystem that does not report them, or two waits of one process sharing events).
const safetyInterval = 100 * time.Millisecond

// notifier wakes waits when something changes in the directories they watch.
//
// Why not only polling: a pod holds a waiting entrypoint per container, and polling
// every few milliseconds (the hand-off budget) costs them about a core in total.
// inotify works across the bind mounts of one emptyDir. Where it is unavailable (the
// per-user instance limit is shared by the whole node), waits fall back to polling.
type notifier struct {
	once    sync.Once
	f       *os.File
	mu      sync.Mutex
	watched map[string]bool
}

var changes notifier

func (n *notifier) init() {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return
	}
	// Non-blocking, so os.File reads go through the runtime poller and honour deadlines.
	n.f = os.NewFile(uintptr(fd), "inotify")
	n.watched = map[string]bool{}
}

// watch reports whether changes in all dirs will wake waits. Watches stay for the
// life of the process: it waits on a handful of directories, and a stale watch costs
// only a spurious check.
func (n *notifier) watch(dirs []string) bool {
	n.once.Do(n.init)
	if n.f == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, d := range dirs {
		if n.watched[d] {
			continue
		}
		const mask = syscall.IN_CREATE | syscall.IN_MOVED_TO | syscall.IN_CLOSE_WRITE | syscall.IN_DELETE | syscall.IN_MODIFY
		if _, err := syscall.InotifyAddWatch(int(n.f.Fd()), d, mask); err != nil {
			return false
		}
		n.watched[d] = true
	}
	return true
}

// block waits for an event or the timeout, then drains the queue: callers re-check
// the state they wait for, so which events arrived does not matter.
func (n *notifier) block(timeout time.Duration) {
	buf := make([]byte, 64*1024)
	_ = n.f.SetReadDeadline(time.Now().Add(timeout))
	if _, err := n.f.Read(buf); err != nil {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			// Never spin on a broken descriptor.
			time.Sleep(5 * time.Millisecond)
		}
		return
	}
	_ = n.f.SetReadDeadline(time.Now())
	for {
		if _, err := n.f.Read(buf); err != nil {
			return
		}
	}
}

// waitFor calls check until it reports done, fails or ctx ends, re-checking whenever
// something changes in dirs, or every interval where that cannot be watched.
func waitFor(ctx context.Context, interval time.Duration, dirs []string, check func() (bool, error)) error {
	if len(dirs) == 0 || !changes.watch(dirs) {
		return wait.PollUntilContextCancel(ctx, interval, true, func(context.Context) (bool, error) { return check() })
	}
	for {
		done, err := check()
		if done || err != nil {
			return err
		}
		changes.block(safetyInterval)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
