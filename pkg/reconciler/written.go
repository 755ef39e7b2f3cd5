package reconciler

import (
	"sort"
	"sync"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	pkgreconciler "knative.dev/pkg/reconciler"
)

// writtenTaskRuns remembers, per run, the child TaskRuns this controller created or
// whose status it wrote, as the API server returned them, until the informer catches
// up. Reconciles follow each other within milliseconds once the reporter's log is
// followed; without this, a reconcile would compare against the informer's older copy
// and write the same status again (or create it again), or conflict. The zero value is
// ready to use; a restart starts empty, as the informer is then in sync.
type writtenTaskRuns struct {
	mu        sync.Mutex
	runs      map[types.NamespacedName]map[string]*written
	lastPrune time.Time
}

type written struct {
	obj *v1.TaskRun
	// stale holds the resource versions obj replaced: an informer copy at one of them
	// is older than obj.
	stale map[string]bool
	at    time.Time
}

// writtenTTL is how long a TaskRun written is remembered: the informer delivers it
// within that time, or the run is no longer reconciled here (deleted while running).
const writtenTTL = 2 * time.Minute

func runKey(cr *v1beta1.CustomRun) types.NamespacedName {
	return types.NamespacedName{Namespace: cr.Namespace, Name: cr.Name}
}

// wrote records obj, written over the version before.
func (w *writtenTaskRuns) wrote(run types.NamespacedName, before string, obj *v1.TaskRun) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	w.prune(now)
	if w.runs == nil {
		w.runs = map[types.NamespacedName]map[string]*written{}
	}
	if w.runs[run] == nil {
		w.runs[run] = map[string]*written{}
	}
	e := w.runs[run][obj.Name]
	if e == nil {
		e = &written{stale: map[string]bool{}}
		w.runs[run][obj.Name] = e
	}
	if before != "" {
		e.stale[before] = true
	}
	if e.obj != nil {
		e.stale[e.obj.ResourceVersion] = true
	}
	e.obj, e.at = obj.DeepCopy(), now
}

// prune drops, at most once a writtenTTL, what was remembered longer than that.
func (w *writtenTaskRuns) prune(now time.Time) {
	if now.Sub(w.lastPrune) < writtenTTL {
		return
	}
	w.lastPrune = now
	for run, entries := range w.runs {
		for name, e := range entries {
			if now.Sub(e.at) > writtenTTL {
				delete(entries, name)
			}
		}
		if len(entries) == 0 {
			delete(w.runs, run)
		}
	}
}

// gone drops a TaskRun found deleted.
func (w *writtenTaskRuns) gone(run types.NamespacedName, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.runs[run], name)
}

// fresh returns listed (the informer's TaskRuns of cr) with every copy older than what
// this controller wrote replaced, and what it created for cr that the informer has not
// listed yet added, sorted by name. Entries the informer caught up with (or moved
// past), and entries of an earlier CustomRun of the same name, are dropped.
func (w *writtenTaskRuns) fresh(cr *v1beta1.CustomRun, listed []*v1.TaskRun) []*v1.TaskRun {
	w.mu.Lock()
	defer w.mu.Unlock()
	run := runKey(cr)
	entries := w.runs[run]
	if len(entries) == 0 {
		return listed
	}
	now := time.Now()
	for name, e := range entries {
		if !metav1.IsControlledBy(e.obj, cr) || now.Sub(e.at) > writtenTTL {
			delete(entries, name)
		}
	}
	out := make([]*v1.TaskRun, 0, len(listed))
	seen := map[string]bool{}
	for _, tr := range listed {
		seen[tr.Name] = true
		e := entries[tr.Name]
		switch {
		case e == nil:
			out = append(out, tr)
		case e.stale[tr.ResourceVersion]:
			out = append(out, e.obj)
		default:
			// The informer holds what was written, or something newer.
			delete(entries, tr.Name)
			out = append(out, tr)
		}
	}
	for name, e := range entries {
		if !seen[name] {
			out = append(out, e.obj)
		}
	}
	if len(entries) == 0 {
		delete(w.runs, run)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// forget drops what was remembered of a run.
func (w *writtenTaskRuns) forget(run types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.runs, run)
}

// demote drops the runs of a bucket this replica no longer leads.
func (w *writtenTaskRuns) demote(b pkgreconciler.Bucket) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for run := range w.runs {
		if b.Has(run) {
			delete(w.runs, run)
		}
	}
}
