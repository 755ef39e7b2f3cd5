package reconciler

import (
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
)

// Pod and node loss. A pod that is being deleted, whose node the node controller found
// unreachable, or that carries a DisruptionTarget condition is observed at once, with or
// without its reporter's log (observe.PodLost, observe.PodFailure). A pod that looks
// alive but whose log cannot be read (pods/log goes through the kubelet of its node) is
// looked at again every few seconds, and once reading has failed for LogReadTimeout the
// run ends with observe.ReasonKubeletUnreachable, naming the node and the last error. No
// read of nodes is needed.

// LogReadTimeout bounds how long the reporter's log of a running pod may fail to be read
// before the run ends (docs/design.md, "Pod and node loss").
const LogReadTimeout = 60 * time.Second

const (
	// unreadableRefresh is how often the time a failing read was last seen is written to
	// the CustomRun's summary (the clock is kept there, to survive a restart), and the
	// longest a failing read waits before it is tried again.
	unreadableRefresh = LogReadTimeout / 6
	// unreadableGap: a failure last seen longer ago than this was not being watched (the
	// controller was down, or the run was not reconciled): the clock starts again rather
	// than count time nobody looked.
	unreadableGap = LogReadTimeout / 2
	// logRequestTimeout bounds one reconcile's read of the log. The kubelet's log file is
	// at most its containerLogMaxSize (10 MiB by default), read in well under that.
	logRequestTimeout = LogReadTimeout / 2
)

// logUnreadable records, in the CustomRun's summary, that the attempt's reporter's log
// cannot be read now, and returns the ending once it has not been readable for
// LogReadTimeout; otherwise nil and when to look again.
func (r *Reconciler) logUnreadable(cr *v1beta1.CustomRun, a *runAttempt, err error, now metav1.Time) (*observe.Ending, time.Duration) {
	s := a.recorded
	since, seen := s.LogUnreadableSince, s.LogUnreadableSeen
	switch {
	case since == nil || seen == nil || now.Sub(seen.Time) > unreadableGap || now.Before(since):
		since, seen = &now, &now
	case now.Sub(seen.Time) >= unreadableRefresh:
		seen = &now
	}
	if elapsed := now.Sub(since.Time); elapsed >= LogReadTimeout {
		started := observe.StartedTasks(observe.Input{Tasks: a.tasks, PodName: a.podName, TaskRuns: byName(a.taskRuns)})
		return observe.KubeletUnreachable(a.pod, elapsed, err, started), 0
	}
	s.LogUnreadableSince, s.LogUnreadableSeen = since, seen
	if s.PodName == a.podName {
		s = a.withDigests(s)
	}
	if serr := setSummary(cr, s); serr != nil {
		return nil, unreadableRefresh
	}
	return nil, min(r.interval(), unreadableRefresh)
}
