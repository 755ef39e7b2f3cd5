package tknplugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Clients are the APIs the commands use.
type Clients struct {
	Kube   kubernetes.Interface
	Tekton versioned.Interface
	// Logs reads containers' logs (a fake in tests: the fake clientset's pods/log has no
	// content of its own).
	Logs LogSource
}

// Connect builds the clients of a kubeconfig, as tkn and kubectl load one.
func Connect(kubeconfig, kubeContext string) (*Clients, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("reading the kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("reading the kubeconfig's namespace: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	tekton, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	return &Clients{Kube: kube, Tekton: tekton, Logs: PodLogs{Kube: kube}}, ns, nil
}

// LogLine is one line of a container's log with the time the container runtime took it.
type LogLine struct {
	Time time.Time
	Text string
}

// LogSource reads container logs.
type LogSource interface {
	// Lines returns the container's lines taken at or after since, in whole seconds as
	// the API's sinceTime (the zero time: the whole log).
	Lines(ctx context.Context, namespace, pod, container string, since time.Time) ([]LogLine, error)
}

// PodLogs reads logs through the pods/log API, with the runtime's timestamps: they tell
// the attempts of a retried task apart, which run one after another in the same containers.
type PodLogs struct {
	Kube kubernetes.Interface
}

var _ LogSource = PodLogs{}

// Lines implements LogSource.
func (p PodLogs) Lines(ctx context.Context, namespace, pod, container string, since time.Time) ([]LogLine, error) {
	opts := &corev1.PodLogOptions{Container: container, Timestamps: true}
	if !since.IsZero() {
		t := metav1.NewTime(since)
		opts.SinceTime = &t
	}
	rc, err := p.Kube.CoreV1().Pods(namespace).GetLogs(pod, opts).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the log of container %s of pod %s: %w", container, pod, err)
	}
	defer rc.Close()
	return ParseTimestamped(rc)
}

// ParseTimestamped reads a log written with timestamps=true: "<RFC3339Nano> <line>". A
// line without a timestamp keeps the previous line's time.
func ParseTimestamped(r io.Reader) ([]LogLine, error) {
	var out []LogLine
	var last time.Time
	br := bufio.NewReader(r)
	for {
		// ReadString rather than a Scanner: a log line has no length bound.
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return out, err
		}
		if line != "" {
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			text := line
			if ts, rest, ok := strings.Cut(line, " "); ok {
				if t, perr := time.Parse(time.RFC3339Nano, ts); perr == nil {
					last, text = t, rest
				}
			} else if t, perr := time.Parse(time.RFC3339Nano, line); perr == nil {
				last, text = t, ""
			}
			out = append(out, LogLine{Time: last, Text: text})
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
	}
}

// containerLog holds what was read of one container's log; refresh reads only what is
// new (from the second of the last line held, skipping the lines already held there).
type containerLog struct {
	lines []LogLine
}

func (c *containerLog) refresh(ctx context.Context, src LogSource, ns, pod, container string) error {
	var since time.Time
	held := 0
	if n := len(c.lines); n > 0 {
		since = c.lines[n-1].Time.Truncate(time.Second)
		for i := n - 1; i >= 0 && !c.lines[i].Time.Before(since); i-- {
			held++
		}
	}
	got, err := src.Lines(ctx, ns, pod, container, since)
	if err != nil {
		return err
	}
	// Lines before since, which the API returns when their time cannot be told (a line
	// without a timestamp), are held already.
	for len(got) > 0 && got[0].Time.Before(since) {
		got = got[1:]
	}
	if held > len(got) {
		held = len(got)
	}
	c.lines = append(c.lines, got[held:]...)
	return nil
}
