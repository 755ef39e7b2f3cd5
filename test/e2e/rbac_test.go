//go:build e2e

package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// controllerServiceAccount is config/200-serviceaccount.yaml's.
const controllerServiceAccount = "pipelineinpod-controller"

// permission is one verb on one resource (of one name, when the rule names them).
type permission struct{ group, resource, verb, name string }

func (p permission) String() string {
	g := p.group
	if g == "" {
		g = "core"
	}
	s := fmt.Sprintf("%s %s/%s", p.verb, g, p.resource)
	if p.name != "" {
		s += " " + p.name
	}
	return s
}

// need lists what the controller does, each with why; grant expands it over verbs.
type need struct {
	group, resource string
	verbs           []string
	names           []string
	why             string
}

func grant(needs []need) map[permission]string {
	out := map[permission]string{}
	for _, n := range needs {
		names := n.names
		if len(names) == 0 {
			names = []string{""}
		}
		for _, v := range n.verbs {
			for _, name := range names {
				out[permission{n.group, n.resource, v, name}] = n.why
			}
		}
	}
	return out
}

// runNamespaceNeeds: what the controller does in the namespace of any run it reconciles.
var runNamespaceNeeds = []need{
	{"tekton.dev", "customruns", []string{"get", "list", "watch"}, nil, "the CustomRun informer brings the runs"},
	{"tekton.dev", "customruns/status", []string{"update"}, nil, "the run's status, written by knative's generated reconciler"},
	{"tekton.dev", "taskruns", []string{"create", "get", "list", "watch", "update", "delete"}, nil,
		"a child TaskRun per pipeline task (create), read back after a restart or conflict (get), the filtered TaskRun informer (list/watch), " +
			"its spec.status Pending cleared as its task starts (update: Tekton's validation refuses a started Pending TaskRun), " +
			"a skipped task's never-run TaskRun (delete)"},
	{"tekton.dev", "taskruns/status", []string{"update"}, nil, "the child TaskRuns' status: the controller is their spec.managedBy"},
	{"tekton.dev", "pipelines", []string{"get"}, nil, "resolving pipelineRef by name (Tekton's GetPipelineFunc)"},
	{"tekton.dev", "tasks", []string{"get"}, nil, "resolving taskRef by name (Tekton's GetTaskFunc)"},
	{"tekton.dev", "stepactions", []string{"get"}, nil, "resolving a step's StepAction ref (Tekton's GetStepActionsData)"},
	{"tekton.dev", "pipelines", []string{"create"}, nil,
		"dry-run only: Tekton's resolution sends a Pipeline fetched by a resolver through the admission webhooks (apiserver.DryRunValidate)"},
	{"tekton.dev", "tasks", []string{"create"}, nil, "dry-run only: the same for a Task fetched by a resolver"},
	{"tekton.dev", "stepactions", []string{"create"}, nil, "dry-run only: the same for a StepAction fetched by a resolver"},
	{"tekton.dev", "verificationpolicies", []string{"list", "watch"}, nil,
		"the VerificationPolicy informer: Tasks and Pipelines fetched by a resolver are verified against the run's namespace's policies, as Tekton does (trusted resources)"},
	{"resolution.tekton.dev", "resolutionrequests", []string{"create", "get", "list", "watch"}, nil,
		"remote resolution (`resolver:` refs) through Tekton's CRD requester and its informer"},
	{"", "pods", []string{"create", "get", "list", "watch", "delete", "patch"}, nil,
		"the run's pod: create, read uncached, the filtered pod informer, delete a cancelled/timed-out/stuck attempt's pod, Tekton's ready annotation (patch)"},
	{"", "pods/log", []string{"get"}, nil, "the reporter container's log carries task states and results of any size"},
	{"", "persistentvolumeclaims", []string{"create"}, nil, "claims of volumeClaimTemplate workspaces"},
	{"", "serviceaccounts", []string{"get"}, nil,
		"Tekton's pod builder reads the run's ServiceAccount for its credential secrets (pkg/pod/creds_init.go) and imagePullSecrets (the entrypoint cache's k8schain)"},
	{"", "secrets", []string{"get"}, nil,
		"those secrets: credentials mounted into steps (pkg/pod/creds_init.go, unless disable-creds-init) and pull secrets to read an image's ENTRYPOINT when a step gives no command (k8schain)"},
	{"", "limitranges", []string{"list"}, nil, "the namespace's LimitRanges bound the requests of the run's pod (pkg/assemble sizes it within them)"},
	{"", "events", []string{"create", "patch"}, nil, "Kubernetes events on the runs (patch: the recorder aggregates repeats)"},
}

// controllerNamespaceNeeds: what it does in its own namespace, besides the above.
var controllerNamespaceNeeds = []need{
	{"", "configmaps", []string{"list", "watch"}, nil, "knative's ConfigMap watcher follows the controller's configuration live"},
	{"", "configmaps", []string{"get"}, []string{"config-logging", "config-observability", "config-leader-election"},
		"knative's sharedmain reads its configuration at start, and only that"},
	{"coordination.k8s.io", "leases", []string{"get", "create", "update"}, nil, "leader election between replicas (client-go's Lease lock)"},
}

// tektonNamespaceNeeds: what it does in Tekton's namespace, besides the above.
var tektonNamespaceNeeds = []need{
	{"", "configmaps", []string{"list", "watch"}, nil,
		"Tekton's config store, fed by an informer on Tekton's ConfigMaps (feature-flags, config-defaults, ...): runs are validated and defaulted as the cluster's Tekton does, and changes count without a restart"},
}

// tektonEveryUser: what Tekton's own RBAC (its config/201-rolebinding.yaml, Role
// tekton-pipelines-info) gives every authenticated user in Tekton's namespace.
var tektonEveryUser = []need{
	{"", "configmaps", []string{"get"}, []string{"pipelines-info"}, "Tekton's Role tekton-pipelines-info, bound to system:authenticated: Tekton's version, for tkn"},
}

// everyUser: what Kubernetes' default system:basic-user role gives every authenticated
// user (the review cannot tell it from the controller's own rules).
var everyUser = []need{
	{"authorization.k8s.io", "selfsubjectaccessreviews", []string{"create"}, nil, "system:basic-user"},
	{"authorization.k8s.io", "selfsubjectrulesreviews", []string{"create"}, nil, "system:basic-user"},
	{"authentication.k8s.io", "selfsubjectreviews", []string{"create"}, nil, "system:basic-user"},
}

// rulesOf asks the API server what the controller's ServiceAccount may do in ns (a
// SelfSubjectRulesReview made with that ServiceAccount's token: what
// `kubectl auth can-i --list --as=system:serviceaccount:...` shows).
func rulesOf(t *testing.T, sa kubernetes.Interface, ns string) map[permission]bool {
	t.Helper()
	r, err := sa.AuthorizationV1().SelfSubjectRulesReviews().Create(t.Context(),
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectRulesReview in %s: %v", ns, err)
	}
	if r.Status.Incomplete {
		t.Fatalf("the rules review in %s is incomplete: %s", ns, r.Status.EvaluationError)
	}
	out := map[permission]bool{}
	for _, rule := range r.Status.ResourceRules {
		names := rule.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				for _, v := range rule.Verbs {
					for _, n := range names {
						out[permission{g, res, v, n}] = true
					}
				}
			}
		}
	}
	return out
}

// TestControllerRBAC: the ServiceAccount config/ runs the controller under may do exactly
// what the controller needs, in the namespace of a run, in its own and in Tekton's:
// nothing missing, nothing more.
func TestControllerRBAC(t *testing.T) {
	e := newEnv(t)
	if _, err := clients.Kube.CoreV1().ServiceAccounts(controllerNamespace).Get(e.ctx, controllerServiceAccount, metav1.GetOptions{}); err != nil {
		t.Fatalf("the controller's ServiceAccount %s/%s (config/): %v", controllerNamespace, controllerServiceAccount, err)
	}
	// The controller runs as that ServiceAccount (unless run on the host: PIP_CONTROLLER=host).
	dep, err := clients.Kube.AppsV1().Deployments(controllerNamespace).Get(e.ctx, "pipelineinpod-controller", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		t.Log("no controller Deployment (a host-run controller): checking the ServiceAccount's rights only")
	case err != nil:
		t.Fatal(err)
	case dep.Spec.Template.Spec.ServiceAccountName != controllerServiceAccount:
		t.Errorf("the Deployment runs as %q, not %q", dep.Spec.Template.Spec.ServiceAccountName, controllerServiceAccount)
	}

	// Authenticated with a token of the ServiceAccount (TokenRequest, as the kubelet gets
	// one for the controller's pod): the API server sees the controller's user and groups.
	tok, err := clients.Kube.CoreV1().ServiceAccounts(controllerNamespace).CreateToken(e.ctx, controllerServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for %s/%s: %v", controllerNamespace, controllerServiceAccount, err)
	}
	cfg := rest.AnonymousClientConfig(clients.Config)
	cfg.BearerToken = tok.Status.Token
	sa := kubernetes.NewForConfigOrDie(cfg)
	if who, err := sa.AuthenticationV1().SelfSubjectReviews().Create(e.ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("SelfSubjectReview with the ServiceAccount's token: %v", err)
	} else {
		t.Logf("authenticated as %s, groups %v", who.Status.UserInfo.Username, who.Status.UserInfo.Groups)
	}

	for _, c := range []struct {
		ns    string
		needs []need
	}{
		{e.ns, runNamespaceNeeds},
		{controllerNamespace, append(append([]need{}, runNamespaceNeeds...), controllerNamespaceNeeds...)},
		{tektonNamespace, append(append(append([]need{}, runNamespaceNeeds...), tektonNamespaceNeeds...), tektonEveryUser...)},
	} {
		want := grant(append(append([]need{}, c.needs...), everyUser...))
		have := rulesOf(t, sa, c.ns)
		var list, missing, extra []string
		for p := range have {
			list = append(list, p.String())
			if _, ok := want[p]; !ok {
				extra = append(extra, p.String())
			}
		}
		for p, why := range want {
			if !have[p] {
				missing = append(missing, fmt.Sprintf("%s (needed: %s)", p, why))
			}
		}
		sort.Strings(list)
		sort.Strings(missing)
		sort.Strings(extra)
		t.Logf("%s may, in namespace %s:\n  %s", controllerServiceAccount, c.ns, strings.Join(list, "\n  "))
		for _, m := range missing {
			t.Errorf("namespace %s: not granted: %s", c.ns, m)
		}
		for _, x := range extra {
			t.Errorf("namespace %s: granted but not needed (least privilege): %s", c.ns, x)
		}
	}
}
