package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

func fakeClients(objs ...runtime.Object) *Clients {
	return &Clients{Kube: k8sfake.NewClientset(), Tekton: tektonfake.NewSimpleClientset(objs...)}
}

func customRun(name string, status corev1.ConditionStatus, reason string) *v1beta1.CustomRun {
	cr := &v1beta1.CustomRun{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
	cr.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: status, Reason: reason}}
	return cr
}

func TestWaitCustomRunDone(t *testing.T) {
	ctx := context.Background()
	c := fakeClients(customRun("done", corev1.ConditionTrue, "Succeeded"), customRun("running", corev1.ConditionUnknown, "Running"))

	cr, _, err := c.WaitCustomRunDone(ctx, "ns", "done", time.Second)
	if err != nil || cr == nil || cr.Name != "done" {
		t.Fatalf("WaitCustomRunDone(done) = %v, %v; want the run", cr, err)
	}

	cr, took, err := c.WaitCustomRunDone(ctx, "ns", "running", 3*PollInterval)
	if err == nil || cr != nil {
		t.Fatalf("WaitCustomRunDone(running) = %v, %v; want a timeout", cr, err)
	}
	if !strings.Contains(err.Error(), `Unknown/Running ""`) || took < 3*PollInterval {
		t.Errorf("WaitCustomRunDone(running) after %s: %v; want the last condition seen, after the timeout", took, err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := c.WaitCustomRunDone(cancelled, "ns", "running", time.Minute); err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Errorf("WaitCustomRunDone with a cancelled context: %v; want it to say so", err)
	}
}

func TestCreateCustomRunAndChildTaskRuns(t *testing.T) {
	ctx := context.Background()
	mine := &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "ns", Labels: map[string]string{pipeline.CustomRunKey: "run"}}}
	other := &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "ns", Labels: map[string]string{pipeline.CustomRunKey: "another"}}}
	c := fakeClients(mine, other)

	in := &v1beta1.CustomRun{ObjectMeta: metav1.ObjectMeta{Name: "run"}}
	got, err := c.CreateCustomRun(ctx, "ns", in)
	if err != nil {
		t.Fatal(err)
	}
	if got.Namespace != "ns" || got.Spec.ServiceAccountName != DefaultServiceAccount || in.Namespace != "" {
		t.Errorf("created %s/%s run by %q (input namespace %q); want ns, the default ServiceAccount, the input untouched",
			got.Namespace, got.Name, got.Spec.ServiceAccountName, in.Namespace)
	}

	trs, err := c.ChildTaskRuns(ctx, "ns", "run")
	if err != nil {
		t.Fatal(err)
	}
	if len(trs) != 1 || trs[0].Name != "mine" {
		t.Errorf("ChildTaskRuns = %v; want only mine", trs)
	}
}

func TestCreate(t *testing.T) {
	ctx := context.Background()
	c := fakeClients()
	task := &v1.Task{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "elsewhere"}}
	if ok, err := c.Create(ctx, "ns", task); !ok || err != nil {
		t.Fatalf("Create(Task) = %v, %v", ok, err)
	}
	if _, err := c.Tekton.TektonV1().Tasks("ns").Get(ctx, "t", metav1.GetOptions{}); err != nil {
		t.Errorf("the Task is not in ns: %v", err)
	}
	if task.Namespace != "elsewhere" {
		t.Errorf("Create changed its argument's namespace to %q", task.Namespace)
	}
	if ok, err := c.Create(ctx, "ns", &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: "pr"}}); ok || err != nil {
		t.Errorf("Create(PipelineRun) = %v, %v; want nothing created", ok, err)
	}
}
