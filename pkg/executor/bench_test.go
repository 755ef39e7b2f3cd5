package executor_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// BenchmarkHandOff measures, over real processes, the time from a parent task's last
// step writing its final time stamp to its child's first step writing its first one:
// the hand-off covers the parent step's exit, its leader publishing the task as done,
// the child's leader noticing and deciding, and the child's step (a shell) starting.
//
//	go test ./pkg/executor/ -run '^$' -bench HandOff -benchtime 20x
func BenchmarkHandOff(b *testing.B) {
	const chain = 6
	var samples []time.Duration
	for b.Loop() {
		var tasks []ttask
		for i := range chain {
			k := fmt.Sprintf("t%d", i)
			tk := task(k)
			if i > 0 {
				tk = task(k, fmt.Sprintf("t%d", i-1))
			}
			tasks = append(tasks, ttask{Task: tk, steps: []tstep{sh(stamped(k, ""))}})
		}
		pd := newPod(b, &plan.Plan{}, tasks...)
		pd.run()
		for i := 1; i < chain; i++ {
			samples = append(samples, time.Duration(pd.nanos(fmt.Sprintf("t%d.start", i))-pd.nanos(fmt.Sprintf("t%d.end", i-1))))
		}
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(samples[len(samples)/2]), "handoff-median-ms")
	b.ReportMetric(ms(samples[len(samples)*9/10]), "handoff-p90-ms")
	b.ReportMetric(ms(samples[len(samples)-1]), "handoff-max-ms")
}
