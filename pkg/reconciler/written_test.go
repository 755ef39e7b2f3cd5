package reconciler

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/kmeta"
)

func TestWrittenTaskRuns(t *testing.T) {
	cr := newCustomRun("run")
	tr := func(name, rv string) *v1.TaskRun {
		return &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, ResourceVersion: rv,
			OwnerReferences: []metav1.OwnerReference{*kmeta.NewControllerRef(cr)},
		}}
	}
	versions := func(trs []*v1.TaskRun) []string {
		var out []string
		for _, t := range trs {
			out = append(out, t.Name+"@"+t.ResourceVersion)
		}
		return out
	}
	var w writtenTaskRuns
	run := runKey(cr)
	w.wrote(run, "", tr("a", "1"))  // created
	w.wrote(run, "1", tr("a", "2")) // its status written twice
	w.wrote(run, "2", tr("a", "3"))
	w.wrote(run, "5", tr("b", "6"))
	w.wrote(run, "", tr("c", "7")) // created, not listed yet

	// a: the informer is two writes behind; b: someone wrote after us.
	got := w.fresh(cr, []*v1.TaskRun{tr("a", "1"), tr("b", "8")})
	if diff := cmp.Diff([]string{"a@3", "b@8", "c@7"}, versions(got)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	// The informer caught up with a; b's entry is gone.
	got = w.fresh(cr, []*v1.TaskRun{tr("a", "3"), tr("b", "8"), tr("c", "7")})
	if diff := cmp.Diff([]string{"a@3", "b@8", "c@7"}, versions(got)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if len(w.runs) != 0 {
		t.Errorf("entries left: %v", w.runs)
	}

	// A CustomRun of the same name made again: what was written for the earlier one is
	// not its TaskRuns.
	w.wrote(run, "", tr("d", "9"))
	again := newCustomRun("run")
	again.UID = "another-uid"
	if got := w.fresh(again, nil); len(got) != 0 {
		t.Errorf("the earlier run's TaskRuns: %v", versions(got))
	}

	// What the informer never delivers is forgotten after a while.
	w.wrote(run, "", tr("e", "10"))
	w.runs[run]["e"].at = time.Now().Add(-2 * writtenTTL)
	if got := w.fresh(cr, nil); len(got) != 0 {
		t.Errorf("an old entry: %v", versions(got))
	}
}
