package v1alpha1

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/configmap"
)

// TektonConfig is Tekton's configuration (feature flags, defaults, ...) made of
// ConfigMaps as Tekton's namespace holds them (feature-flags, config-defaults, ...),
// through Tekton's own config store: what a ConfigMap leaves out, and every ConfigMap
// not given, is Tekton's default. Tekton's SetDefaults, Validate and pod builder read it
// from a context (config.ToContext). `pipelineinpod render` builds with it; the
// controller instead watches the cluster's own ConfigMaps (pkg/reconciler), so that a
// run is accepted, refused and defaulted as the cluster's Tekton would.
func TektonConfig(cms ...*corev1.ConfigMap) (*config.Config, error) {
	log := &storeLog{}
	store := config.NewStore(log)
	// The store registers the ConfigMaps it reads with a watcher: that is the list of
	// names it knows, kept by Tekton.
	w := &configmap.ManualWatcher{}
	store.WatchConfigs(w)
	known := map[string]bool{}
	_ = w.ForEach(func(name string, _ []configmap.Observer) error {
		known[name] = true
		return nil
	})
	for _, cm := range cms {
		if !known[cm.Name] {
			names := make([]string, 0, len(known))
			for n := range known {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, fmt.Errorf("ConfigMap %q: not one of Tekton's configuration ConfigMaps (%s)", cm.Name, strings.Join(names, ", "))
		}
		in := cm.DeepCopy()
		in.Namespace = w.Namespace
		w.OnChange(in)
		if log.err != nil {
			return nil, fmt.Errorf("ConfigMap %q: %w", cm.Name, log.err)
		}
	}
	return store.Load(), nil
}

// storeLog is the store's logger: a ConfigMap the store cannot read is reported through
// it (Fatalf the first time, Errorf after), and becomes TektonConfig's error instead of
// ending the process.
type storeLog struct{ err error }

func (l *storeLog) Debugf(string, ...any) {}
func (l *storeLog) Infof(string, ...any)  {}
func (l *storeLog) Fatalf(format string, args ...any) {
	l.record(format, args)
}
func (l *storeLog) Errorf(format string, args ...any) { l.record(format, args) }

// record keeps the constructor's error, the store's last argument, else the message.
func (l *storeLog) record(format string, args []any) {
	if len(args) > 0 {
		if err, ok := args[len(args)-1].(error); ok {
			l.err = err
			return
		}
	}
	l.err = fmt.Errorf(format, args...)
}
