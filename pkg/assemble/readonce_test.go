package assemble_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/pipelineinpod/pipelineinpod/pkg/assemble"
)

// Tekton's pod builder reads the service account and its secrets for each task; one pod
// reads each once, and every task still gets the credentials.
func TestServiceAccountReadOncePerPod(t *testing.T) {
	ctx, c, opts := compileRun(t, `
apiVersion: tekton.dev/v1beta1
kind: CustomRun
metadata: {name: r, namespace: ns}
spec:
  customSpec:
    apiVersion: tekton.dev/v1alpha1
    kind: PipelineInPod
    spec:
      taskRunTemplate: {serviceAccountName: builder}
      pipelineSpec:
        tasks:
        - {name: a, taskSpec: {steps: [{name: s, image: busybox, command: ["true"]}]}}
        - {name: b, taskSpec: {steps: [{name: s, image: busybox, command: ["true"]}]}}
        - {name: c, taskSpec: {steps: [{name: s, image: busybox, command: ["true"]}]}}
`)
	kc := k8sfake.NewSimpleClientset(
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder", Namespace: "ns"}, Secrets: []corev1.ObjectReference{{Name: "git"}}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "git", Namespace: "ns", Annotations: map[string]string{"tekton.dev/git-0": "https://example.com"}},
			Type:       corev1.SecretTypeBasicAuth, Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")},
		})
	opts.KubeClient = kc
	out, err := assemble.Pod(ctx, opts, c)
	if err != nil {
		t.Fatal(err)
	}
	gets := map[string]int{}
	for _, a := range kc.Actions() {
		if a.GetVerb() == "get" {
			gets[a.GetResource().Resource]++
		}
	}
	if gets["serviceaccounts"] != 1 || gets["secrets"] != 1 {
		t.Errorf("gets = %v, want one of the service account and one of its secret", gets)
	}
	for _, key := range []string{"a", "b", "c"} {
		found := false
		for _, ctr := range out.Pod.Spec.Containers {
			if ctr.Name == "step-"+key+"-s" {
				for _, arg := range ctr.Args {
					if arg == "-basic-git=git=https://example.com" {
						found = true
					}
				}
			}
		}
		if !found {
			t.Errorf("task %s: its step has no -basic-git credentials flag", key)
		}
	}
}
