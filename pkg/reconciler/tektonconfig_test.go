package reconciler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	fakepipelineclient "github.com/tektoncd/pipeline/pkg/client/injection/client/fake"
	"github.com/tektoncd/pipeline/pkg/trustedresources"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	ktesting "k8s.io/client-go/testing"
	"knative.dev/pkg/apis"
	fakekubeclient "knative.dev/pkg/client/injection/kube/client/fake"
	logtesting "knative.dev/pkg/logging/testing"

	"github.com/pipelineinpod/pipelineinpod/pkg/apis/pipelineinpod/v1alpha1"
	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
	"github.com/pipelineinpod/pipelineinpod/pkg/prepare"
)

// tektonCM is one of Tekton's ConfigMaps in Tekton's namespace.
func tektonCM(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: DefaultTektonNamespace}, Data: data}
}

func withTektonConfig(ctx context.Context, t *testing.T, cms ...*corev1.ConfigMap) context.Context {
	t.Helper()
	cfg, err := v1alpha1.TektonConfig(cms...)
	if err != nil {
		t.Fatal(err)
	}
	return config.ToContext(ctx, cfg)
}

// A run's timeout is its own, else its inline spec's, else config-defaults'
// default-timeout-minutes (0: none), as Tekton defaults a PipelineRun's.
func TestTimeoutOf(t *testing.T) {
	inline := newCustomRun("inline")
	inline.Spec.CustomRef = nil
	inline.Spec.CustomSpec = &v1beta1.EmbeddedCustomRunSpec{}
	inline.Spec.CustomSpec.APIVersion, inline.Spec.CustomSpec.Kind = v1alpha1.APIVersion, v1alpha1.Kind
	inline.Spec.CustomSpec.Spec.Raw = []byte(`{"pipelineRef":{"name":"p"},"timeouts":{"pipeline":"2m"}}`)
	own := newCustomRun("own")
	own.Spec.Timeout = &metav1.Duration{Duration: 3 * time.Minute}
	for _, c := range []struct {
		name     string
		cr       *v1beta1.CustomRun
		defaults map[string]string
		want     time.Duration
	}{
		{"Tekton's default", newCustomRun("run"), nil, time.Hour},
		{"config-defaults", newCustomRun("run"), map[string]string{"default-timeout-minutes": "5"}, 5 * time.Minute},
		{"config-defaults: none", newCustomRun("run"), map[string]string{"default-timeout-minutes": "0"}, config.NoTimeoutDuration},
		{"the inline spec's", inline, map[string]string{"default-timeout-minutes": "5"}, 2 * time.Minute},
		{"the run's own", own, map[string]string{"default-timeout-minutes": "5"}, 3 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := withTektonConfig(context.Background(), t, tektonCM(config.GetDefaultsConfigName(), c.defaults))
			if d := cmp.Diff(c.want, timeoutOf(ctx, c.cr)); d != "" {
				t.Errorf("timeout (-want +got):\n%s", d)
			}
		})
	}
}

// A run without a timeout times out after config-defaults' default-timeout-minutes.
func TestDefaultTimeoutFromConfigDefaults(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	h.ctx = withTektonConfig(h.ctx, t, tektonCM(config.GetDefaultsConfigName(), map[string]string{"default-timeout-minutes": "2"}))
	h.reconcile()
	h.setPod(0, running)
	h.clock.SetTime(t0.Add(119 * time.Second))
	h.reconcile()
	if v := h.view(); v.Condition != "Unknown/Running" {
		t.Fatalf("before the default timeout: %+v", v)
	}
	h.clock.SetTime(t0.Add(121 * time.Second))
	h.reconcile()
	if v := h.view(); v.Condition != "False/CustomRunTimedOut" {
		t.Errorf("after config-defaults' 2 minutes: %+v", v)
	}
}

// A verification that passed (or warned) is recorded on the run as Tekton records it on
// a PipelineRun: the TrustedResourcesVerified condition.
func TestVerifiedCondition(t *testing.T) {
	h := newHarness(t, newCustomRun("run"), taskA)
	verified := &apis.Condition{Type: trustedresources.ConditionTrustedResourcesVerified, Status: corev1.ConditionFalse, Message: "no matching policies"}
	h.r.Preparer = preparerFunc(func(ctx context.Context, cr *v1beta1.CustomRun) (*prepare.Prepared, error) {
		p, err := h.prep.Prepare(ctx, cr)
		if err == nil {
			p.Verified = verified
		}
		return p, err
	})
	h.reconcile()
	got := h.cr().Status.GetCondition(trustedresources.ConditionTrustedResourcesVerified)
	if got == nil || got.Status != verified.Status || got.Message != verified.Message {
		t.Errorf("TrustedResourcesVerified = %+v, want %+v", got, verified)
	}
	if c := h.cr().Status.GetCondition(apis.ConditionSucceeded); c == nil || !c.IsUnknown() {
		t.Errorf("Succeeded = %+v: a warning does not end the run", c)
	}
}

// The store follows Tekton's ConfigMaps: a missing one is Tekton's defaults, a change or
// a deletion counts without a restart.
func TestWatchTektonConfig(t *testing.T) {
	ctx, cancel := context.WithCancel(logtesting.TestContextWithLogger(t))
	defer cancel()
	kc := k8sfake.NewSimpleClientset(tektonCM(config.GetFeatureFlagsConfigName(), map[string]string{"enable-param-enum": "true"}))
	store, err := WatchTektonConfig(ctx, kc, DefaultTektonNamespace, &TektonVersion{})
	if err != nil {
		t.Fatal(err)
	}
	if got := store.Load(); !got.FeatureFlags.EnableParamEnum || got.Defaults.DefaultTimeoutMinutes != config.DefaultTimeoutMinutes {
		t.Fatalf("at start: enable-param-enum %v, default timeout %d; want the ConfigMap's and Tekton's default", got.FeatureFlags.EnableParamEnum, got.Defaults.DefaultTimeoutMinutes)
	}
	eventually := func(what string, ok func(*config.Config) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok(store.Load()) {
			if time.Now().After(deadline) {
				t.Fatalf("the store never saw %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := kc.CoreV1().ConfigMaps(DefaultTektonNamespace).Update(ctx, tektonCM(config.GetFeatureFlagsConfigName(), map[string]string{"enable-param-enum": "false"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("enable-param-enum turned off", func(c *config.Config) bool { return !c.FeatureFlags.EnableParamEnum })
	if _, err := kc.CoreV1().ConfigMaps(DefaultTektonNamespace).Create(ctx, tektonCM(config.GetDefaultsConfigName(), map[string]string{"default-timeout-minutes": "7"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("config-defaults created", func(c *config.Config) bool { return c.Defaults.DefaultTimeoutMinutes == 7 })
	if err := kc.CoreV1().ConfigMaps(DefaultTektonNamespace).Delete(ctx, config.GetDefaultsConfigName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("config-defaults deleted", func(c *config.Config) bool { return c.Defaults.DefaultTimeoutMinutes == config.DefaultTimeoutMinutes })
	// Another namespace's ConfigMaps are not Tekton's.
	if _, err := kc.CoreV1().ConfigMaps("elsewhere").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.GetFeatureFlagsConfigName(), Namespace: "elsewhere"}, Data: map[string]string{"enable-param-enum": "true"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if store.Load().FeatureFlags.EnableParamEnum {
		t.Error("a ConfigMap of another namespace changed the configuration")
	}
}

// A namespace the controller may not read fails the start, naming the namespace, rather
// than letting runs be checked against defaults that are not the cluster's.
func TestWatchTektonConfigForbidden(t *testing.T) {
	defer func(d time.Duration) { tektonConfigTimeout = d }(tektonConfigTimeout)
	tektonConfigTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(logtesting.TestContextWithLogger(t))
	defer cancel()
	kc := k8sfake.NewSimpleClientset()
	kc.PrependReactor("list", "configmaps", func(ktesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("configmaps"), "", errors.New("no RBAC"))
	})
	_, err := WatchTektonConfig(ctx, kc, "tekton-elsewhere", &TektonVersion{})
	if err == nil || !strings.Contains(err.Error(), "namespace tekton-elsewhere") {
		t.Errorf("err = %v, want one naming the namespace", err)
	}
}

// The whole controller (as sharedmain runs it, on fake clients): a run the cluster's
// feature flags refuse fails; once Tekton's feature-flags ConfigMap allows it, the next
// run of the same Pipeline starts, without a restart.
func TestFeatureFlagFlipWithoutRestart(t *testing.T) {
	ctx, impl, stop := setupController(t)
	kube, tekton := fakekubeclient.Get(ctx), fakepipelineclient.Get(ctx)
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = impl.Run(ctx)
	}()
	// The workers log through the test's logger: they must be gone when it ends.
	defer func() {
		stop()
		<-ran
	}()
	enumRun := func(name string) *v1beta1.CustomRun {
		cr, err := v1alpha1.FromPipelineRun(&v1.PipelineRun{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1.PipelineRunSpec{
				Params: v1.Params{{Name: "env", Value: *v1.NewStructuredValues("dev")}},
				PipelineSpec: &v1.PipelineSpec{
					Params: v1.ParamSpecs{{Name: "env", Enum: []string{"dev", "prod"}}},
					Tasks: []v1.PipelineTask{{
						Name:     "a",
						TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo $(params.env)"}}}},
					}},
				},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tekton.TektonV1beta1().CustomRuns(ns).Create(ctx, cr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return cr
	}
	// outcome waits for a run to fail (its message) or to get its pod ("started").
	outcome := func(name string) string {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			got, err := tekton.TektonV1beta1().CustomRuns(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if c := got.Status.GetCondition(apis.ConditionSucceeded); c.IsFalse() {
				return c.Message
			}
			if _, err := kube.CoreV1().Pods(ns).Get(ctx, plan.PodName(name, 0), metav1.GetOptions{}); err == nil {
				return "started"
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("run %s neither failed nor started", name)
		return ""
	}

	// No feature-flags ConfigMap: Tekton's defaults, param enums off.
	enumRun("before")
	if got := outcome("before"); !strings.Contains(got, "enable-param-enum") {
		t.Fatalf("with Tekton's default flags: %q, want a refusal naming enable-param-enum", got)
	}
	if _, err := kube.CoreV1().ConfigMaps(DefaultTektonNamespace).Create(ctx, tektonCM(config.GetFeatureFlagsConfigName(), map[string]string{"enable-param-enum": "true"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The watcher is asynchronous: the first runs may still see the old flags.
	for i := 0; ; i++ {
		name := "after-" + string(rune('a'+i))
		enumRun(name)
		got := outcome(name)
		if got == "started" {
			break
		}
		if i == 20 || !strings.Contains(got, "enable-param-enum") {
			t.Fatalf("after enabling enable-param-enum, run %s: %q", name, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Only a release Tekton states, from v1.5.0 on, is known to honour spec.managedBy.
func TestTektonVersion(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.15.1": true, "v1.5.0": true, "1.6.0": true, "v1.5.0-rc.1": false, "v1.4.2": false,
		"devel": false, "": false,
	} {
		tv := &TektonVersion{}
		tv.observe(&corev1.ConfigMap{Data: map[string]string{"version": v}})
		if got := tv.HonoursManagedBy(); got != want {
			t.Errorf("version %q: HonoursManagedBy = %v, want %v", v, got, want)
		}
	}
	var unknown *TektonVersion
	if unknown.HonoursManagedBy() {
		t.Error("no TektonVersion: HonoursManagedBy = true")
	}
}
