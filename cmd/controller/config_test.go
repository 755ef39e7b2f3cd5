package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/pipelineinpod/pipelineinpod/pkg/reconciler"
)

// readConfig decodes every document of config/ strictly into its typed object: what
// `ko apply -f config/` would send, minus the ko:// resolution.
func readConfig(t *testing.T) map[string][]runtime.Object {
	t.Helper()
	files, err := filepath.Glob("../../config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no config files: %v", err)
	}
	out := map[string][]runtime.Object{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			js, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(js, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			// Strict: no unknown or misplaced field, which the API server would drop.
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out[filepath.Base(f)] = append(out[filepath.Base(f)], obj)
		}
	}
	return out
}

func TestConfig(t *testing.T) {
	objs := readConfig(t)
	var dep *appsv1.Deployment
	var sa *corev1.ServiceAccount
	var roles []rbacv1.PolicyRule
	var bindings []rbacv1.Subject
	roleNamespaces := map[string]bool{}
	configMaps := map[string]bool{}
	for _, list := range objs {
		for _, o := range list {
			switch o := o.(type) {
			case *appsv1.Deployment:
				dep = o
			case *corev1.ServiceAccount:
				sa = o
			case *rbacv1.ClusterRole:
				roles = append(roles, o.Rules...)
			case *rbacv1.Role:
				roles = append(roles, o.Rules...)
				roleNamespaces[o.Namespace] = true
			case *rbacv1.ClusterRoleBinding:
				bindings = append(bindings, o.Subjects...)
			case *rbacv1.RoleBinding:
				bindings = append(bindings, o.Subjects...)
			case *corev1.ConfigMap:
				configMaps[o.Name] = true
			}
		}
	}
	if dep == nil || sa == nil {
		t.Fatal("no Deployment or ServiceAccount")
	}
	if dep.Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Errorf("the Deployment runs as %q, the ServiceAccount is %q", dep.Spec.Template.Spec.ServiceAccountName, sa.Name)
	}
	for _, s := range bindings {
		if s.Name != sa.Name || s.Namespace != sa.Namespace {
			t.Errorf("binding subject %+v is not the ServiceAccount", s)
		}
	}
	for _, cm := range []string{"config-logging", "config-observability", "config-leader-election"} {
		if !configMaps[cm] {
			t.Errorf("ConfigMap %s missing", cm)
		}
	}

	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != "ko://github.com/pipelineinpod/pipelineinpod/cmd/controller" {
		t.Errorf("image = %q", c.Image)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if env["PIP_ENTRYPOINT_IMAGE"].Value != "ko://github.com/pipelineinpod/pipelineinpod/cmd/entrypoint" {
		t.Errorf("PIP_ENTRYPOINT_IMAGE = %q", env["PIP_ENTRYPOINT_IMAGE"].Value)
	}
	if env["SYSTEM_NAMESPACE"].ValueFrom == nil {
		t.Error("SYSTEM_NAMESPACE must come from the pod's namespace")
	}
	// Tekton's ConfigMaps are read where a Role lets the controller read them.
	if ns := env["TEKTON_SYSTEM_NAMESPACE"].Value; ns != reconciler.DefaultTektonNamespace || !roleNamespaces[ns] {
		t.Errorf("TEKTON_SYSTEM_NAMESPACE = %q, want %q with a Role there (roles in %v)", ns, reconciler.DefaultTektonNamespace, roleNamespaces)
	}
	// Every image the controller requires is set by the Deployment, through the env
	// variable its flag defaults from.
	if err := validateImages(env["PIP_ENTRYPOINT_IMAGE"].Value, pipeline.Images{
		WorkingDirInitImage: env["TEKTON_WORKINGDIRINIT_IMAGE"].Value, ShellImage: env["TEKTON_SHELL_IMAGE"].Value,
	}); err != nil {
		t.Errorf("the Deployment leaves images unset: %v", err)
	}

	// The permissions the code needs (see the comments in the roles for why each).
	need := []struct{ group, resource, verb string }{
		{"tekton.dev", "customruns", "watch"}, {"tekton.dev", "customruns/status", "update"},
		{"tekton.dev", "taskruns", "create"}, {"tekton.dev", "taskruns", "get"}, {"tekton.dev", "taskruns/status", "update"},
		{"tekton.dev", "pipelines", "get"}, {"tekton.dev", "tasks", "get"}, {"tekton.dev", "stepactions", "get"},
		{"resolution.tekton.dev", "resolutionrequests", "create"}, {"resolution.tekton.dev", "resolutionrequests", "watch"},
		{"", "pods", "create"}, {"", "pods", "delete"}, {"", "pods", "patch"}, {"", "pods", "watch"}, {"", "pods/log", "get"},
		{"", "persistentvolumeclaims", "create"}, {"", "events", "create"}, {"", "configmaps", "watch"},
		{"tekton.dev", "verificationpolicies", "watch"}, {"tekton.dev", "tasks", "create"}, {"tekton.dev", "pipelines", "create"},
		{"coordination.k8s.io", "leases", "update"},
	}
	for _, n := range need {
		if !allowed(roles, n.group, n.resource, n.verb) {
			t.Errorf("no rule allows %s %s/%s", n.verb, n.group, n.resource)
		}
	}
	for _, r := range roles {
		for _, v := range r.Verbs {
			if v == "*" {
				t.Errorf("wildcard verb in %+v", r)
			}
		}
	}
}

func allowed(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	has := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	for _, r := range rules {
		if has(r.APIGroups, group) && has(r.Resources, resource) && has(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// Least privilege is reviewable only if every rule says why it is there.
func TestRBACRulesAreExplained(t *testing.T) {
	for _, f := range []string{"../../config/200-clusterrole.yaml", "../../config/200-role.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "- apiGroups:") && (i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#")) {
				t.Errorf("%s:%d: a rule without a comment saying why", f, i+1)
			}
		}
	}
}

func TestValidateImages(t *testing.T) {
	images := pipeline.Images{WorkingDirInitImage: "wd", ShellImage: "sh"}
	if err := validateImages("", images); err == nil || !strings.Contains(err.Error(), "-pip-entrypoint-image") {
		t.Errorf("err = %v", err)
	}
	if err := validateImages("ep", images); err != nil {
		t.Errorf("err = %v", err)
	}
}
