package assemble

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
)

// podLevelResourcesSince is the first Kubernetes release whose API server accepts
// spec.resources on pods by default (feature gate PodLevelResources, beta and on by
// default from 1.34).
var podLevelResourcesSince = version.MajorMinor(1, 34)

// PodLevelResourcesSupported tells whether the API server behind d accepts pod-level
// resources, from its version: what the controller sets Options.PodLevelResources from.
//
// A cluster at 1.34 or later whose admin turned the gate off drops spec.resources from
// new pods, which then request only their containers' LimitRange floors; the version is
// what discovery can tell without creating anything.
func PodLevelResourcesSupported(d discovery.ServerVersionInterface) (bool, error) {
	info, err := d.ServerVersion()
	if err != nil {
		return false, fmt.Errorf("reading the API server's version: %w", err)
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		// Some distributions report only major and minor ("1", "34+").
		if v, err = version.ParseGeneric(fmt.Sprintf("%s.%s", info.Major, trimPlus(info.Minor))); err != nil {
			return false, fmt.Errorf("the API server's version %q (major %q, minor %q): %w", info.GitVersion, info.Major, info.Minor, err)
		}
	}
	return v.AtLeast(podLevelResourcesSince), nil
}

func trimPlus(s string) string {
	for len(s) > 0 && (s[len(s)-1] < '0' || s[len(s)-1] > '9') {
		s = s[:len(s)-1]
	}
	return s
}
