package assemble

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// readOnce wraps the client Tekton's pod builder is given for one pod: the builder reads
// the run's ServiceAccount and each of its secrets for every task it builds (creds-init,
// pkg/pod/creds_init.go), and every task of the one pod has the same service account
// (docs/design.md, hazard 8), so each object is read once per pod. With 50 tasks the
// reads otherwise took 1.5 s of the client's rate before the pod could be created.
// Everything but these Gets goes to the wrapped client.
func readOnce(kc kubernetes.Interface) kubernetes.Interface {
	if kc == nil {
		return nil
	}
	return &onceClient{Interface: kc, core: &onceCore{CoreV1Interface: kc.CoreV1(), seen: map[onceKey]onceResult{}}}
}

type onceClient struct {
	kubernetes.Interface
	core *onceCore
}

func (c *onceClient) CoreV1() typedcorev1.CoreV1Interface { return c.core }

type onceKey struct{ kind, namespace, name string }

type onceResult struct {
	obj any
	err error
}

type onceCore struct {
	typedcorev1.CoreV1Interface
	mu   sync.Mutex
	seen map[onceKey]onceResult
}

// get returns what read returned the first time key was asked for.
func (c *onceCore) get(key onceKey, read func() (any, error)) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.seen[key]; ok {
		return r.obj, r.err
	}
	obj, err := read()
	c.seen[key] = onceResult{obj: obj, err: err}
	return obj, err
}

func (c *onceCore) ServiceAccounts(namespace string) typedcorev1.ServiceAccountInterface {
	return &onceServiceAccounts{ServiceAccountInterface: c.CoreV1Interface.ServiceAccounts(namespace), core: c, namespace: namespace}
}

func (c *onceCore) Secrets(namespace string) typedcorev1.SecretInterface {
	return &onceSecrets{SecretInterface: c.CoreV1Interface.Secrets(namespace), core: c, namespace: namespace}
}

type onceServiceAccounts struct {
	typedcorev1.ServiceAccountInterface
	core      *onceCore
	namespace string
}

func (s *onceServiceAccounts) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.ServiceAccount, error) {
	obj, err := s.core.get(onceKey{"ServiceAccount", s.namespace, name}, func() (any, error) {
		return s.ServiceAccountInterface.Get(ctx, name, opts)
	})
	sa, _ := obj.(*corev1.ServiceAccount)
	return sa.DeepCopy(), err
}

type onceSecrets struct {
	typedcorev1.SecretInterface
	core      *onceCore
	namespace string
}

func (s *onceSecrets) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error) {
	obj, err := s.core.get(onceKey{"Secret", s.namespace, name}, func() (any, error) {
		return s.SecretInterface.Get(ctx, name, opts)
	})
	secret, _ := obj.(*corev1.Secret)
	return secret.DeepCopy(), err
}
