// Package cluster is what the programs and tests under test/ that run against a live
// cluster share (the benchmark, the conformance run and the e2e tests): clients from a
// kubeconfig, a namespace per run, creating objects and CustomRuns in it, waiting for
// runs to finish, and reading a run's child TaskRuns and its containers' logs.
package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"knative.dev/pkg/apis"
)

const (
	// PollInterval is how often Poll asks the API server again.
	PollInterval = 200 * time.Millisecond
	// ServiceAccountTimeout bounds the wait for a new namespace's default ServiceAccount.
	ServiceAccountTimeout = 30 * time.Second
	// DefaultServiceAccount runs a CustomRun that names none, as in a PipelineRun.
	DefaultServiceAccount = "default"
)

// Clients talk to one cluster.
type Clients struct {
	Kube   kubernetes.Interface
	Tekton versioned.Interface
	// Config is the kubeconfig's, for clients with other credentials on the same cluster.
	Config *rest.Config
}

// Connect builds the clients for the cluster of a kubeconfig file (an empty path means
// the in-cluster configuration, as for clientcmd).
func Connect(kubeconfig string) (*Clients, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	// A run creates and polls many objects at once; client-go's default of 5 queries a
	// second would make the client, not the cluster, the bottleneck.
	cfg.QPS, cfg.Burst = 50, 100
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	tekton, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Clients{Kube: kube, Tekton: tekton, Config: cfg}, nil
}

// Poll calls check every PollInterval until it reports done and returns how long that
// took. After timeout it fails naming what it waited for and what check last saw.
func Poll(ctx context.Context, timeout time.Duration, what string, check func(context.Context) (done bool, seen string)) (time.Duration, error) {
	start := time.Now()
	last := ""
	err := wait.PollUntilContextTimeout(ctx, PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		done, seen := check(ctx)
		last = seen
		return done, nil
	})
	switch {
	case err == nil:
		return time.Since(start), nil
	case ctx.Err() != nil:
		return time.Since(start), fmt.Errorf("waiting for %s: %w; last seen: %s", what, ctx.Err(), last)
	}
	return time.Since(start), fmt.Errorf("waited %s for %s; last seen: %s", timeout, what, last)
}

// CreateNamespace creates a namespace and waits for its default ServiceAccount, which
// its pods need. When it fails after the namespace was made, created is true, so that
// the caller still deletes it.
func (c *Clients) CreateNamespace(ctx context.Context, name string) (created bool, err error) {
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		return false, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	_, err = Poll(ctx, ServiceAccountTimeout, "the default ServiceAccount of namespace "+name, func(ctx context.Context) (bool, string) {
		_, err := c.Kube.CoreV1().ServiceAccounts(name).Get(ctx, DefaultServiceAccount, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return true, err
}

// DeleteNamespace deletes a namespace; one that is already gone is no error.
func (c *Clients) DeleteNamespace(ctx context.Context, name string) error {
	if err := c.Kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	return nil
}

// Create creates a copy of obj in namespace ns, for the kinds that files of Pipelines
// and their runs hold besides the runs: Pipelines, Tasks, StepActions, ConfigMaps,
// Secrets, ServiceAccounts and PersistentVolumeClaims. For any other kind it creates
// nothing and returns false.
func (c *Clients) Create(ctx context.Context, ns string, obj runtime.Object) (bool, error) {
	obj = obj.DeepCopyObject()
	if m, ok := obj.(metav1.Object); ok {
		m.SetNamespace(ns)
	}
	opts := metav1.CreateOptions{}
	var err error
	switch o := obj.(type) {
	case *v1.Pipeline:
		_, err = c.Tekton.TektonV1().Pipelines(ns).Create(ctx, o, opts)
	case *v1.Task:
		_, err = c.Tekton.TektonV1().Tasks(ns).Create(ctx, o, opts)
	case *v1beta1.StepAction:
		_, err = c.Tekton.TektonV1beta1().StepActions(ns).Create(ctx, o, opts)
	case *corev1.ConfigMap:
		_, err = c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, o, opts)
	case *corev1.Secret:
		_, err = c.Kube.CoreV1().Secrets(ns).Create(ctx, o, opts)
	case *corev1.ServiceAccount:
		_, err = c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, o, opts)
	case *corev1.PersistentVolumeClaim:
		_, err = c.Kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, o, opts)
	default:
		return false, nil
	}
	return true, err
}

// CreateCustomRun creates a copy of cr in namespace ns, run by the namespace's default
// ServiceAccount unless cr names one.
func (c *Clients) CreateCustomRun(ctx context.Context, ns string, cr *v1beta1.CustomRun) (*v1beta1.CustomRun, error) {
	cr = cr.DeepCopy()
	cr.Namespace = ns
	if cr.Spec.ServiceAccountName == "" {
		cr.Spec.ServiceAccountName = DefaultServiceAccount
	}
	return c.Tekton.TektonV1beta1().CustomRuns(ns).Create(ctx, cr, metav1.CreateOptions{})
}

// WaitCustomRunDone waits until the CustomRun is done and returns it with the time waited.
func (c *Clients) WaitCustomRunDone(ctx context.Context, ns, name string, timeout time.Duration) (*v1beta1.CustomRun, time.Duration, error) {
	var cr *v1beta1.CustomRun
	took, err := Poll(ctx, timeout, "CustomRun "+name+" to finish", func(ctx context.Context) (bool, string) {
		got, err := c.Tekton.TektonV1beta1().CustomRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		cr = got
		return got.IsDone(), ConditionString(got.Status.GetCondition(apis.ConditionSucceeded))
	})
	if err != nil {
		return nil, took, err
	}
	return cr, took, nil
}

// ChildTaskRuns lists the TaskRuns made for a CustomRun (Tekton's customRun label).
func (c *Clients) ChildTaskRuns(ctx context.Context, ns, customRun string) ([]v1.TaskRun, error) {
	list, err := c.Tekton.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: pipeline.CustomRunKey + "=" + customRun})
	if err != nil {
		return nil, fmt.Errorf("listing the TaskRuns of CustomRun %s: %w", customRun, err)
	}
	return list.Items, nil
}

// ContainerLog reads the log of one container of a pod; tail > 0 keeps its last lines.
func (c *Clients) ContainerLog(ctx context.Context, ns, pod, container string, tail int64) (string, error) {
	opts := &corev1.PodLogOptions{Container: container}
	if tail > 0 {
		opts.TailLines = &tail
	}
	b, err := c.Kube.CoreV1().Pods(ns).GetLogs(pod, opts).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("reading the log of %s/%s: %w", pod, container, err)
	}
	return string(b), nil
}

// ConditionString shows a Succeeded condition in one line, for messages.
func ConditionString(c *apis.Condition) string {
	if c == nil {
		return "no Succeeded condition"
	}
	return fmt.Sprintf("%s/%s %q", c.Status, c.Reason, c.Message)
}
