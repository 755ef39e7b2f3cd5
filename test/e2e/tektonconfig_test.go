//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/pkg/reconciler"
	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

// tektonNamespace is where config/ lets the controller read Tekton's ConfigMaps.
const tektonNamespace = reconciler.DefaultTektonNamespace

// flagPropagation bounds how long a change of Tekton's ConfigMaps may take to reach the
// controller's informer (a watch event: well under a second on a healthy cluster).
const flagPropagation = time.Minute

// enumSpec is a Pipeline with a param enum: Tekton accepts it only with
// enable-param-enum, and so must PipelineInPod.
const enumSpec = `
pipelineSpec:
  params:
    - name: env
      enum: [dev, prod]
  tasks:
    - name: echo
      params:
        - name: env
          value: $(params.env)
      taskSpec:
        params:
          - name: env
        steps:
          - name: echo
            image: ` + busybox + `
            script: echo "env is $(params.env)"
`

// setFeatureFlag sets one key of Tekton's feature-flags ConfigMap; the test's cleanup
// puts the ConfigMap's data back as it was.
func setFeatureFlag(e *env, key, value string) {
	e.t.Helper()
	cms := clients.Kube.CoreV1().ConfigMaps(tektonNamespace)
	name := config.GetFeatureFlagsConfigName()
	orig, err := cms.Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("Tekton's %s/%s: %v", tektonNamespace, name, err)
	}
	e.t.Cleanup(func() {
		// A fresh context: the test's may be cancelled by now.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cur, err := cms.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			cur.Data = orig.Data
			_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil {
			e.t.Errorf("restoring %s/%s: %v", tektonNamespace, name, err)
		}
	})
	cur := orig.DeepCopy()
	if cur.Data == nil {
		cur.Data = map[string]string{}
	}
	cur.Data[key] = value
	if _, err := cms.Update(e.ctx, cur, metav1.UpdateOptions{}); err != nil {
		e.t.Fatalf("setting %s=%s in %s/%s: %v", key, value, tektonNamespace, name, err)
	}
	e.t.Logf("%s/%s: %s=%s", tektonNamespace, name, key, value)
}

// controllerPods identifies the in-cluster controller's pods and their restarts (none
// for a host-run controller).
func controllerPods(e *env) map[types.UID]int32 {
	e.t.Helper()
	pods, err := clients.Kube.CoreV1().Pods(controllerNamespace).List(e.ctx, metav1.ListOptions{LabelSelector: controllerSelector})
	if err != nil && !apierrors.IsNotFound(err) {
		e.t.Fatal(err)
	}
	out := map[types.UID]int32{}
	if pods == nil {
		return out
	}
	for _, p := range pods.Items {
		var restarts int32
		for _, s := range p.Status.ContainerStatuses {
			restarts += s.RestartCount
		}
		out[p.UID] = restarts
	}
	return out
}

// decisionLimit bounds how long the controller takes to accept (create the pod of) or
// refuse one run.
const decisionLimit = time.Minute

// outcome creates an enum run and waits until the controller has decided on it:
// "refused: <reason>: <message>" when it failed before having a pod, "accepted" once it
// has one.
func outcome(e *env) (name, verdict string) {
	e.t.Helper()
	cr := e.createCustomRun(inlineCustomRun(e.t, "enum-", enumSpec, stringParam("env", "dev")))
	e.poll(decisionLimit, "CustomRun "+cr.Name+" accepted or refused", func() (bool, string) {
		got, err := clients.Tekton.TektonV1beta1().CustomRuns(e.ns).Get(e.ctx, cr.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := got.Status.GetCondition(apis.ConditionSucceeded)
		switch {
		case len(e.podsOf(cr.Name)) > 0:
			verdict = "accepted"
		case c.IsFalse():
			verdict = fmt.Sprintf("refused: %s: %s", c.Reason, c.Message)
		}
		return verdict != "", cluster.ConditionString(c)
	})
	return cr.Name, verdict
}

// decide creates runs until one is decided as want (a prefix of outcome's verdict) and
// returns it. The ConfigMap watcher is asynchronous: until a change reaches the
// controller, runs still get the former flags; each such probe run is deleted. Bounded
// by flagPropagation (plus the last run's decisionLimit).
func decide(e *env, want string) (name, verdict string) {
	e.t.Helper()
	deadline := time.Now().Add(flagPropagation)
	for {
		name, verdict = outcome(e)
		if strings.HasPrefix(verdict, want) {
			return name, verdict
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no run %s within %v of the change; the last, %s: %s", want, flagPropagation, name, verdict)
		}
		e.t.Logf("%s: %s (the change has not reached the controller yet)", name, verdict)
		if err := clients.Tekton.TektonV1beta1().CustomRuns(e.ns).Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
			e.t.Logf("deleting %s: %v", name, err)
		}
		time.Sleep(time.Second)
	}
}

// TestFeatureFlagWithoutRestart: Tekton's feature flags decide what PipelineInPod
// accepts, as they decide what Tekton accepts, and a change of Tekton's feature-flags
// ConfigMap counts for the next run, without restarting the controller. With
// enable-param-enum off a Pipeline with a param enum is refused with the flag named;
// once it is on, the same run is accepted and succeeds.
func TestFeatureFlagWithoutRestart(t *testing.T) {
	e := newEnv(t)
	before := controllerPods(e)

	setFeatureFlag(e, "enable-param-enum", "false")
	if _, refused := decide(e, "refused"); !strings.Contains(refused, "enable-param-enum") {
		t.Errorf("with enable-param-enum off: %s, want a refusal naming the flag", refused)
	}

	setFeatureFlag(e, "enable-param-enum", "true")
	name, _ := decide(e, "accepted")
	done, _ := e.waitCustomRunDone(name, runLimit)
	e.checkSucceeded(done)

	// The same controller pods, not restarted, made both decisions.
	if after := controllerPods(e); len(before) > 0 && !mapsEqual(before, after) {
		t.Errorf("the controller's pods changed or restarted: before %v, after %v", before, after)
	}
}

func mapsEqual(a, b map[types.UID]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
