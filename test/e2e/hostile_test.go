//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/observe"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

// forgingSpec: task forger writes, in its own state directory, a status.json that
// claims to be task honest's, with a forged result; it also tries to write into
// honest's directory, which its container mounts read-only.
const forgingSpec = `
pipelineSpec:
  tasks:
  - name: honest
    taskSpec:
      results: [{name: value}]
      steps:
      - {name: produce, image: ` + busybox + `, script: 'sleep 4; printf real > $(results.value.path)'}
  - name: forger
    taskSpec:
      steps:
      - name: forge
        image: ` + busybox + `
        script: |
          printf '{"key":"honest","phase":"Succeeded","results":[{"name":"value","type":"string","value":"forged"}]}' > /tekton/pip/state/forger/status.json
          if echo x > /tekton/pip/state/honest/status.json; then echo "WROTE INTO ANOTHER TASK'S DIRECTORY"; fi
          sleep 6
  results:
  - {name: value, value: $(tasks.honest.results.value)}
`

// A step that forges another task's state changes nothing of that task: honest's
// TaskRun keeps its own result, the forger's TaskRun fails naming the attempt, and the
// run fails.
func TestForgedStateIsRefused(t *testing.T) {
	e := newEnv(t)
	cr := e.createCustomRun(inlineCustomRun(t, "forge-", forgingSpec))
	cr, took := e.waitCustomRunDone(cr.Name, runLimit)
	t.Logf("CustomRun %s done after %s", cr.Name, took.Round(time.Millisecond))
	if c := cr.Status.GetCondition(apis.ConditionSucceeded); !c.IsFalse() {
		t.Errorf("CustomRun %s: want False, got %s", cr.Name, cluster.ConditionString(c))
	}
	trs := e.childTaskRuns(cr.Name)
	honest, forger := trs["honest"], trs["forger"]
	if honest == nil || forger == nil {
		t.Fatalf("want TaskRuns for honest and forger, got %v", keys(trs))
	}
	if c := honest.Status.GetCondition(apis.ConditionSucceeded); !c.IsTrue() {
		t.Errorf("TaskRun %s (honest): want True, got %s", honest.Name, cluster.ConditionString(c))
	}
	if got := trResults(honest)["value"]; got != "real" {
		t.Errorf("TaskRun %s (honest): result value = %q, want %q", honest.Name, got, "real")
	}
	c := forger.Status.GetCondition(apis.ConditionSucceeded)
	if !c.IsFalse() || !strings.Contains(c.Message, "forging") || !strings.Contains(c.Message, `"honest"`) {
		t.Errorf("TaskRun %s (forger): want False with a message naming the forging of honest's state, got %s", forger.Name, cluster.ConditionString(c))
	}
	if got := crResults(cr)["value"]; got == "forged" {
		t.Errorf("CustomRun %s: result value = %q", cr.Name, got)
	}
	pod := e.onePod(cr.Name)
	if log := e.containerLog(pod.Name, "step-forger-forge"); strings.Contains(log, "WROTE INTO") {
		t.Errorf("the forger could write into honest's state directory:\n%s", log)
	}
}

// rotationSpec makes the reporter's log outgrow the local cluster's containerLogMaxSize
// (hack/local-cluster/up.sh: 128Ki, rotated every 3 s): 6 parallel tasks of 4 results of
// 3000 bytes, printed in each task's final line and again in the snapshot lines (72 KB
// each: a snapshot must fit in one log file, docs/design.md "The results channel"), then
// a task that holds the pod long enough for the kubelet to rotate the log.
const rotationTasks, rotationResults = 6, 4

func rotationSpec() string {
	var b strings.Builder
	b.WriteString("pipelineSpec:\n  tasks:\n")
	var names []string
	for i := range rotationTasks {
		name := fmt.Sprintf("big%d", i)
		names = append(names, name)
		fmt.Fprintf(&b, "  - name: %s\n    taskSpec:\n      results:\n", name)
		var script strings.Builder
		for j := range rotationResults {
			fmt.Fprintf(&b, "      - {name: r%d}\n", j)
			fmt.Fprintf(&script, "head -c 2990 /dev/zero | tr '\\0' %c > $(results.r%d.path); printf -- '-%s-%d' >> $(results.r%d.path)\n", 'a'+rune(i), j, name, j, j)
		}
		fmt.Fprintf(&b, "      steps:\n      - name: write\n        image: %s\n        script: |\n          sleep 4\n", busybox)
		for _, l := range strings.Split(strings.TrimSpace(script.String()), "\n") {
			b.WriteString("          " + l + "\n")
		}
	}
	fmt.Fprintf(&b, "  - name: hold\n    runAfter: [%s]\n    taskSpec:\n      steps:\n      - {name: wait, image: %s, script: 'sleep 40'}\n",
		strings.Join(names, ", "), busybox)
	return b.String()
}

// The reporter's log is rotated while no controller runs: the controller that starts
// then reads only the current log file (pods/log serves no other), and still gets every
// task's final state and results from the reporter's snapshot lines (docs/design.md,
// "The results channel").
func TestReportSurvivesRotationAndControllerRestart(t *testing.T) {
	e := newEnv(t)
	cr := e.createCustomRun(inlineCustomRun(t, "rotation-", rotationSpec()))
	e.waitTaskRunning(cr.Name, "big0")
	pod := e.onePod(cr.Name)
	scaleController(t, e, 0)
	logDir := filepath.Join(clusterDir(), "run", "pod-logs", fmt.Sprintf("%s_%s_%s", e.ns, pod.Name, pod.UID), "step-pip-reporter")
	if _, err := os.Stat(logDir); err == nil {
		e.poll(time.Minute, "the kubelet to rotate the reporter's log", func() (bool, string) {
			files, _ := filepath.Glob(filepath.Join(logDir, "0.log.*"))
			return len(files) > 0, fmt.Sprintf("no rotated file in %s", logDir)
		})
	} else {
		t.Logf("%s: %v; not the local cluster, rotation not checked", logDir, err)
		time.Sleep(20 * time.Second)
	}
	scaleController(t, e, 1)
	if cr, err := clients.Tekton.TektonV1beta1().CustomRuns(e.ns).Get(e.ctx, cr.Name, metav1.GetOptions{}); err != nil || cr.IsDone() {
		t.Fatalf("CustomRun %s ended (or cannot be read: %v) before the controller came back: the test proves nothing", cr.Name, err)
	}

	cr, took := e.waitCustomRunDone(cr.Name, runLimit)
	t.Logf("CustomRun %s done %s after the controller came back", cr.Name, took.Round(time.Millisecond))
	if c := cr.Status.GetCondition(apis.ConditionSucceeded); !c.IsTrue() {
		t.Fatalf("CustomRun %s: want True, got %s", cr.Name, cluster.ConditionString(c))
	}
	trs := e.childTaskRuns(cr.Name)
	for i := range rotationTasks {
		name := fmt.Sprintf("big%d", i)
		tr := trs[name]
		if tr == nil {
			t.Errorf("no TaskRun for %s", name)
			continue
		}
		if c := tr.Status.GetCondition(apis.ConditionSucceeded); !c.IsTrue() {
			t.Errorf("TaskRun %s: want True, got %s", tr.Name, cluster.ConditionString(c))
		}
		got := trResults(tr)
		for j := range rotationResults {
			want := strings.Repeat(string('a'+rune(i)), 2990) + fmt.Sprintf("-%s-%d", name, j)
			if v := got[fmt.Sprintf("r%d", j)]; v != want {
				t.Errorf("TaskRun %s: result r%d has %d bytes ending %q, want %d ending %q", tr.Name, j, len(v), tail(v, 12), len(want), tail(want, 12))
			}
		}
	}
}

// scaleController sets the replicas of the controller's Deployment and waits until that
// many pods are ready and no other is left; the test's end brings back one replica.
func scaleController(t *testing.T, e *env, replicas int32) {
	t.Helper()
	deployments := clients.Kube.AppsV1().Deployments(controllerNamespace)
	if _, err := deployments.Get(e.ctx, controllerDeployment, metav1.GetOptions{}); err != nil {
		t.Skipf("no Deployment %s/%s (%v): a host-run controller cannot be stopped from here", controllerNamespace, controllerDeployment, err)
	}
	set := func(n int32) error {
		s, err := deployments.GetScale(context.Background(), controllerDeployment, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = n
		_, err = deployments.UpdateScale(context.Background(), controllerDeployment, s, metav1.UpdateOptions{})
		return err
	}
	if replicas == 0 {
		t.Cleanup(func() {
			if err := set(1); err != nil {
				t.Errorf("bringing the controller back: %v", err)
			}
		})
	}
	if err := set(replicas); err != nil {
		t.Fatal(err)
	}
	e.poll(2*time.Minute, fmt.Sprintf("%d ready controller pod(s) and no other", replicas), func() (bool, string) {
		pods, err := clients.Kube.CoreV1().Pods(controllerNamespace).List(e.ctx, metav1.ListOptions{LabelSelector: controllerSelector})
		if err != nil {
			return false, err.Error()
		}
		var ready int32
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				return false, "pod " + p.Name + " terminating"
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == replicas && len(pods.Items) == int(replicas), fmt.Sprintf("%d pods, %d ready", len(pods.Items), ready)
	})
}

// Deleting the pod of a running CustomRun ends the run at once, naming the cause.
func TestPodDeletedEndsRun(t *testing.T) {
	e := newEnv(t)
	cr := e.createCustomRun(inlineCustomRun(t, "poddeleted-", sleepySpec))
	e.waitTaskRunning(cr.Name, "sleepy")
	pod := e.onePod(cr.Name)
	start := time.Now()
	if err := clients.Kube.CoreV1().Pods(e.ns).Delete(e.ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cr, _ = e.waitCustomRunDone(cr.Name, 2*time.Minute)
	took := time.Since(start)
	t.Logf("CustomRun %s done %s after its pod was deleted", cr.Name, took.Round(time.Millisecond))
	c := cr.Status.GetCondition(apis.ConditionSucceeded)
	// PodDeleted, or Failed as its tasks ended when their final statuses were stored
	// before the pod was gone: either way the message names the pod and the cause.
	if !c.IsFalse() || (c.Reason != observe.ReasonPodDeleted && c.Reason != string(v1beta1.CustomRunReasonFailed)) ||
		!strings.Contains(c.Message, pod.Name) || !strings.Contains(c.Message, "deleted") {
		t.Errorf("CustomRun %s: want False/%s naming pod %s, got %s", cr.Name, observe.ReasonPodDeleted, pod.Name, cluster.ConditionString(c))
	}
	if took > 30*time.Second {
		t.Errorf("the run ended %s after its pod was deleted, want within 30s", took.Round(time.Millisecond))
	}
	for task, tr := range e.childTaskRuns(cr.Name) {
		c := tr.Status.GetCondition(apis.ConditionSucceeded)
		if !c.IsFalse() || tr.Status.CompletionTime == nil {
			t.Errorf("TaskRun %s (%s): want ended False, got %s", tr.Name, task, cluster.ConditionString(c))
		}
		if task == "sleepy" && c.Reason != observe.ReasonPodDeleted {
			t.Errorf("TaskRun %s (sleepy, running when its pod went): want reason %s, got %s", tr.Name, observe.ReasonPodDeleted, cluster.ConditionString(c))
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
