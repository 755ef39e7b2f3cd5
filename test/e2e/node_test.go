//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/pkg/reconciler"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

// freezeKubelet stops the local cluster's kubelet (SIGSTOP: its containers run on, it
// answers nothing, the node stops reporting) until the test ends, then resumes it and
// waits for the node to be Ready again. Only possible on the local cluster, whose
// kubelet is a process of this machine.
func freezeKubelet(e *env) {
	e.t.Helper()
	pidFile := filepath.Join(clusterDir(), "run", "pids", "kubelet.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		e.t.Skipf("%s: %v; not the local cluster, its kubelet cannot be frozen from here", pidFile, err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		e.t.Fatalf("%s: %v", pidFile, err)
	}
	e.t.Cleanup(func() {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			e.t.Errorf("resuming the kubelet (pid %d): %v", pid, err)
			return
		}
		e.poll(3*time.Minute, "the node to be Ready again", func() (bool, string) {
			nodes, err := clients.Kube.CoreV1().Nodes().List(e.ctx, metav1.ListOptions{})
			if err != nil {
				return false, err.Error()
			}
			for _, n := range nodes.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
						return false, "node " + n.Name + " " + string(c.Status)
					}
				}
			}
			return true, ""
		})
	})
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		e.t.Fatalf("stopping the kubelet (pid %d): %v", pid, err)
	}
	e.t.Logf("kubelet (pid %d) frozen", pid)
}

// A node whose kubelet stops answering (frozen, partitioned away) ends the runs on it
// within a bounded time, naming the cause, instead of leaving them to their timeouts
// (docs/design.md, "Pod and node loss").
func TestKubeletUnreachableEndsRun(t *testing.T) {
	e := newEnv(t)
	cr := e.createCustomRun(inlineCustomRun(t, "frozen-", sleepySpec))
	e.waitTaskRunning(cr.Name, "sleepy")
	start := time.Now()
	freezeKubelet(e)
	cr, _ = e.waitCustomRunDone(cr.Name, 4*time.Minute)
	took := time.Since(start)
	c := cr.Status.GetCondition(apis.ConditionSucceeded)
	t.Logf("CustomRun %s done %s after its kubelet froze: %s", cr.Name, took.Round(time.Millisecond), cluster.ConditionString(c))
	if !c.IsFalse() || (c.Reason != observe.ReasonKubeletUnreachable && c.Reason != observe.ReasonNodeLost && c.Reason != observe.ReasonPodDisrupted) {
		t.Errorf("CustomRun %s: want False/%s (or the node's loss), got %s", cr.Name, observe.ReasonKubeletUnreachable, cluster.ConditionString(c))
	}
	// The bound: LogReadTimeout after the first failed read, which a follow stream that
	// hangs silently notices within a requeue interval plus one bounded read.
	if limit := reconciler.LogReadTimeout + 90*time.Second; took > limit {
		t.Errorf("the run ended %s after the kubelet froze, want within %s", took.Round(time.Second), limit)
	}
	// A TaskRun write that failed as the run ended is retried once the CustomRun is done.
	e.poll(30*time.Second, "TaskRun of sleepy to end False", func() (bool, string) {
		tr := e.childTaskRuns(cr.Name)["sleepy"]
		if tr == nil {
			return false, "no TaskRun"
		}
		c := tr.Status.GetCondition(apis.ConditionSucceeded)
		return c.IsFalse(), cluster.ConditionString(c)
	})
}
