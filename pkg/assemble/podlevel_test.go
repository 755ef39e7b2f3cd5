package assemble

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestPodLevelResourcesSupported(t *testing.T) {
	for _, tc := range []struct {
		name string
		info version.Info
		want bool
	}{
		{"1.33", version.Info{Major: "1", Minor: "33", GitVersion: "v1.33.5"}, false},
		{"1.34", version.Info{Major: "1", Minor: "34", GitVersion: "v1.34.0"}, true},
		{"1.35 k3s", version.Info{Major: "1", Minor: "35", GitVersion: "v1.35.1+k3s1"}, true},
		{"1.36 pre-release", version.Info{Major: "1", Minor: "36", GitVersion: "v1.36.0-alpha.1"}, true},
		{"1.29 cloud", version.Info{Major: "1", Minor: "29+", GitVersion: "v1.29.4-gke.100"}, false},
		{"minor only", version.Info{Major: "1", Minor: "34+", GitVersion: "unknown"}, true},
		{"2.0", version.Info{Major: "2", Minor: "0", GitVersion: "v2.0.0"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{}, FakedServerVersion: &tc.info}
			got, err := PodLevelResourcesSupported(d)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPodLevelResourcesSupportedErrors(t *testing.T) {
	f := &k8stesting.Fake{}
	f.AddReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	if _, err := PodLevelResourcesSupported(&fakediscovery.FakeDiscovery{Fake: f}); err == nil {
		t.Error("want the discovery error")
	}
	d := &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{}, FakedServerVersion: &version.Info{Major: "x", Minor: "y", GitVersion: "nonsense"}}
	if _, err := PodLevelResourcesSupported(d); err == nil {
		t.Error("want an error for an unparseable version")
	}
}
