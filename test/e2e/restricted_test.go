//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	podconvert "github.com/tektoncd/pipeline/pkg/pod"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/pipelineinpod/pipelineinpod/test/cluster"
)

// enforceRestricted labels the test's namespace so that Pod Security admission
// enforces the restricted profile there.
func enforceRestricted(e *env) {
	e.t.Helper()
	ns, err := clients.Kube.CoreV1().Namespaces().Get(e.ctx, e.ns, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := clients.Kube.CoreV1().Namespaces().Update(e.ctx, ns, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// With Tekton's set-security-context, the restricted example (examples/
// restricted-namespace.yaml) runs in a namespace that enforces the restricted Pod
// Security Standard: every container of the pod, ours included, passes admission and
// runs as non-root. A run whose steps are not restricted is refused there at once, with
// Tekton's reason, instead of waiting for a pod that can never exist.
func TestRestrictedNamespace(t *testing.T) {
	e := newEnv(t)
	enforceRestricted(e)
	setFeatureFlag(e, "set-security-context", "true")
	// The controller reads Tekton's ConfigMaps through an informer: give it the change.
	time.Sleep(2 * time.Second)

	cr := e.createCustomRun(exampleCustomRun(t, e.applyExample("restricted-namespace.yaml")))
	cr, took := e.waitCustomRunDone(cr.Name, runLimit)
	t.Logf("CustomRun %s done after %s", cr.Name, took.Round(time.Millisecond))
	if c := cr.Status.GetCondition(apis.ConditionSucceeded); !c.IsTrue() {
		t.Fatalf("CustomRun %s: want True, got %s", cr.Name, cluster.ConditionString(c))
	}
	if got := crResults(cr)["words"]; got != "4" {
		t.Errorf("CustomRun %s: result words = %q, want 4", cr.Name, got)
	}
	pod := e.onePod(cr.Name)
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation not false: %+v", c.Name, sc)
		}
	}
	if log := e.containerLog(pod.Name, "step-write-write"); !strings.HasPrefix(log, "65532") {
		t.Errorf("step write ran as %q, want uid 65532", log)
	}

	refused := e.createCustomRun(inlineCustomRun(t, "unrestricted-", sleepySpec))
	refused, took = e.waitCustomRunDone(refused.Name, time.Minute)
	c := refused.Status.GetCondition(apis.ConditionSucceeded)
	t.Logf("CustomRun %s done after %s: %s", refused.Name, took.Round(time.Millisecond), cluster.ConditionString(c))
	if !c.IsFalse() || c.Reason != podconvert.ReasonPodAdmissionFailed || !strings.Contains(c.Message, "violates PodSecurity") {
		t.Errorf("CustomRun %s: want False/%s saying it violates PodSecurity, got %s", refused.Name, podconvert.ReasonPodAdmissionFailed, cluster.ConditionString(c))
	}
	if c.Reason == string(v1beta1.CustomRunReasonTimedOut) {
		t.Errorf("the refused run waited for its timeout")
	}
}
