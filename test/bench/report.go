package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// lastTaskEnded is when the reporter printed the last task's end: the latest, over the
// tasks, of the first line that carries the task's final state (snapshot lines only
// print it again), read from its log with timestamps (pods/log timestamps=true).
func lastTaskEnded(log string) (time.Time, bool) {
	ended := map[string]bool{}
	var last time.Time
	for _, line := range strings.Split(log, "\n") {
		ts, ok := plan.LineTime([]byte(line))
		if !ok {
			continue
		}
		var l plan.ReportLine
		if json.Unmarshal([]byte(line[strings.IndexByte(line, ' ')+1:]), &l) != nil || l.Task == nil || !l.Task.Phase.IsTerminal() || ended[l.Task.Key] {
			continue
		}
		ended[l.Task.Key] = true
		if ts.After(last) {
			last = ts
		}
	}
	return last, !last.IsZero()
}

func median(ds []time.Duration) time.Duration {
	var s []time.Duration
	for _, d := range ds {
		if d != 0 {
			s = append(s, d)
		}
	}
	if len(s) == 0 {
		return 0
	}
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianFloat(fs []float64) float64 {
	if len(fs) == 0 {
		return 0
	}
	s := append([]float64(nil), fs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func pick(ss []sample, f func(sample) time.Duration) time.Duration {
	var ds []time.Duration
	for _, s := range ss {
		ds = append(ds, f(s))
	}
	return median(ds)
}

// total is a run's CPU-seconds over the components.
func total(cpu map[string]float64) float64 {
	t := 0.0
	for _, v := range cpu {
		t += v
	}
	return t
}

// medianCPU is the median CPU-seconds of the runs, of one component or (name "") of
// all; -1 when no run saw it.
func medianCPU(ss []sample, name string) float64 {
	var fs []float64
	for _, s := range ss {
		if name == "" {
			if len(s.cpu) > 0 {
				fs = append(fs, total(s.cpu))
			}
		} else if v, ok := s.cpu[name]; ok {
			fs = append(fs, v)
		}
	}
	if len(fs) == 0 {
		return -1
	}
	return medianFloat(fs)
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func cpuSecs(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func (p phases) String() string {
	return fmt.Sprintf("pod created %s, running %s, last task ended %s", secs(p.podCreated), secs(p.podRunning), secs(p.lastTaskEnded))
}

func table(rows [][]string) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	return b.String()
}

// componentNames are the CPU columns, in components' order.
var componentNames = []string{"apiserver", "etcd", "kubelet", "containerd", "tekton-controller", "pip-controller"}

// report prints the scaling table, the breakdown of each variant and its CPU by
// component, then every sample.
func report(scenarios []scenario, results map[string][]sample, runs int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nbench: medians of %d runs each (after 1 warm-up), from just before Create to the end point seen by a watch\n\n", runs)
	rows := [][]string{{"scenario", "tasks", "PipelineInPod", "floor pod", "Tekton", "PiP/floor", "PiP/Tekton", "CPU-s PiP", "CPU-s floor", "CPU-s Tekton", "CPU PiP/Tekton", "pod alone", "pod alone/floor"}}
	for _, sc := range scenarios {
		p, f, t, a := results[key(sc.key, pip)], results[key(sc.key, floor)], results[key(sc.key, tekton)], results[key(sc.key, podAlone)]
		if len(p)+len(f)+len(t)+len(a) == 0 {
			continue
		}
		end := func(s sample) time.Duration { return s.end }
		pe, fe, te, ae := pick(p, end), pick(f, end), pick(t, end), pick(a, end)
		pc, fc, tc := medianCPU(p, ""), medianCPU(f, ""), medianCPU(t, "")
		rows = append(rows, []string{sc.key + " (" + sc.title + ")", fmt.Sprint(sc.tasks()), secs(pe), secs(fe), secs(te),
			ratio(pe.Seconds(), fe.Seconds()), ratio(pe.Seconds(), te.Seconds()), cpuSecs(pc), cpuSecs(fc), cpuSecs(tc), ratio(pc, tc),
			secs(ae), ratio(ae.Seconds(), fe.Seconds())})
	}
	b.WriteString(table(rows))
	b.WriteString(`
end points: PipelineInPod = the CustomRun's Succeeded condition True; Tekton = the PipelineRun's; floor = one
plain Pod with one container per task, each just echo, reaching phase Succeeded; pod alone = the pod a
PipelineInPod run of the scenario created, created again as a plain Pod (no controller, no TaskRuns), reaching
phase Succeeded. CPU-s: CPU-seconds used during the run by the machine's API server, etcd, kubelet, containerd
(and shims) and both controllers.
`)

	b.WriteString("\nbreakdown (medians, from just before Create):\n\n")
	rows = [][]string{{"variant", "pod created", "pod running", "last task ended", "end"}}
	cpuRows := [][]string{append([]string{"variant"}, componentNames...)}
	for _, sc := range scenarios {
		for _, v := range []string{pip, podAlone, floor, tekton} {
			ss := results[key(sc.key, v)]
			if len(ss) == 0 {
				continue
			}
			rows = append(rows, []string{key(sc.key, v),
				secs(pick(ss, func(s sample) time.Duration { return s.podCreated })),
				secs(pick(ss, func(s sample) time.Duration { return s.podRunning })),
				secs(pick(ss, func(s sample) time.Duration { return s.lastTaskEnded })),
				secs(pick(ss, func(s sample) time.Duration { return s.end }))})
			row := []string{key(sc.key, v)}
			for _, n := range componentNames {
				row = append(row, cpuSecs(medianCPU(ss, n)))
			}
			cpuRows = append(cpuRows, row)
		}
	}
	b.WriteString(table(rows))
	b.WriteString(`
pod created / running: the first pod, as the bench's pod watch saw it. last task ended: PipelineInPod, the
reporter's line for the last task's final state (its log's timestamps), so too for its pod alone; Tekton, the
last task pod Succeeded; floor, every container terminated.
`)
	b.WriteString("\nCPU-seconds per run by component (medians; - where not seen):\n\n")
	b.WriteString(table(cpuRows))

	b.WriteString("\nsamples (end, s):\n")
	var keys []string
	for k := range results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var parts []string
		for _, s := range results[k] {
			parts = append(parts, fmt.Sprintf("%.2f", s.end.Seconds()))
		}
		fmt.Fprintf(&b, "  %-13s %s\n", k, strings.Join(parts, " "))
	}
	return b.String()
}
