package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/pipelineinpod/pipelineinpod/test/cluster"
	"github.com/pipelineinpod/pipelineinpod/test/conformance/corpus"
)

// The default corpus lists every example of the module once; what is not run says why,
// and an example needing alpha fields is not run on a cluster whose Tekton has beta.
func TestModuleEntries(t *testing.T) {
	for _, tc := range []struct {
		apiFields string
		wantSkip  bool
	}{{"beta", true}, {"alpha", false}} {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "feature-flags", Namespace: *tektonNS},
			Data:       map[string]string{"enable-api-fields": tc.apiFields, "enable-param-enum": "true"},
		}
		entries, err := moduleEntries(context.Background(), &cluster.Clients{Kube: k8sfake.NewSimpleClientset(cm)})
		if err != nil {
			t.Fatal(err)
		}
		list, err := corpus.Expectations()
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(list) {
			t.Errorf("%d entries for %d listed examples", len(entries), len(list))
		}
		seen := map[string]bool{}
		for _, e := range entries {
			if seen[e.name] {
				t.Errorf("%s listed twice", e.name)
			}
			seen[e.name] = true
			if e.fail != "" {
				t.Errorf("%s: %s", e.name, e.fail)
			}
			if e.skip == "" && e.load == nil {
				t.Errorf("%s: neither skipped nor loadable", e.name)
			}
			if e.name == "pipelineruns/alpha/param-enum.yaml" {
				if got := strings.Contains(e.skip, "enable-api-fields=alpha"); got != tc.wantSkip {
					t.Errorf("enable-api-fields %s: %s skipped %v (%q), want %v", tc.apiFields, e.name, got, e.skip, tc.wantSkip)
				}
			}
		}
	}
}
