package main

import (
	"testing"

	"knative.dev/pkg/injection"
)

// The names must match injectors that the linked packages really register: a renamed one
// would be started again (and refused by the RBAC) without this test failing.
func TestUnusedInformersAreRegisteredAndDropped(t *testing.T) {
	registered := map[string]bool{}
	all := injection.Default.GetInformers()
	for _, ii := range all {
		registered[injectorName(ii)] = true
	}
	for name, what := range unusedInformers {
		if !registered[name] {
			t.Errorf("no registered informer injector %s (%s): renamed upstream?", name, what)
		}
	}
	kept := withoutInformers{Interface: injection.Default, drop: unusedInformers}.GetInformers()
	for _, ii := range kept {
		if _, ok := unusedInformers[injectorName(ii)]; ok {
			t.Errorf("%s kept", injectorName(ii))
		}
	}
	if len(all)-len(kept) != len(unusedInformers) {
		t.Errorf("%d of %d informers dropped, want %d", len(all)-len(kept), len(all), len(unusedInformers))
	}
	// The informers the controller reads are started: a dropped one would make knative's
	// Get panic when the controller is built.
	for _, read := range []string{verificationPolicyInformer} {
		found := false
		for _, ii := range kept {
			found = found || injectorName(ii) == read
		}
		if !found {
			t.Errorf("%s not kept (registered: %v)", read, registered[read])
		}
	}
}

// verificationPolicyInformer is the injector of the informer pkg/reconciler lists
// VerificationPolicies with.
const verificationPolicyInformer = "github.com/tektoncd/pipeline/pkg/client/injection/informers/pipeline/v1alpha1/verificationpolicy.withInformer"
