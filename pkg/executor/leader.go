package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/entrypoint"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/plan"
)

// finish (leader) waits for every step of attempt k, then either starts a retry
// (reporting true) or publishes the task's final state.
func (s *step) finish(k int) (bool, error) {
	steps, err := s.waitSteps()
	if err != nil {
		return false, err
	}
	v := s.verdict(steps)
	if v.stepReason != "" {
		// Tekton marks the steps a timeout or cancellation kept from running with the
		// TaskRun's reason (failTaskRun).
		for i := range steps {
			if steps[i].Reason == ReasonSkipped && steps[i].ExitCode == nil {
				one := int32(1)
				steps[i].Reason, steps[i].ExitCode = v.stepReason, &one
			}
		}
	}
	now := metav1.Now()
	if v.failed && v.retriable && k < s.task.Retries {
		return true, s.retry(k, steps, v, now)
	}
	results, rerr := s.collectResults()
	if rerr != nil && !v.failed {
		v = verdict{failed: true, reason: v1.TaskRunReasonFailed.String(), message: rerr.Error()}
	}
	final := &plan.TaskState{
		Key:            s.task.Key,
		Phase:          plan.PhaseSucceeded,
		Reason:         v1.TaskRunReasonSuccessful.String(),
		Message:        "All Steps have completed executing",
		StartTime:      s.cur.StartTime,
		CompletionTime: &now,
		RetryCount:     k,
		Attempts:       s.cur.Attempts,
		Steps:          steps,
		Results:        results,
	}
	if v.failed {
		final.Phase, final.Reason, final.Message = plan.PhaseFailed, v.reason, v.message
		if s.task.OnError == v1.PipelineTaskContinue {
			final.Reason = v1.TaskRunReasonFailureIgnored.String()
		}
	}
	return false, writeState(s.cfg.StateDir, final)
}

func (s *step) waitSteps() ([]plan.StepState, error) {
	steps := make([]plan.StepState, len(s.task.Steps))
	done := make([]bool, len(steps))
	dirs := []string{filepath.Join(plan.TaskDir(s.cfg.StateDir, s.task.Key), stepsDirName)}
	err := waitFor(context.Background(), s.cfg.Poll, dirs, func() (bool, error) {
		all := true
		for j := range steps {
			if done[j] {
				continue
			}
			ok, err := readJSON(plan.StepFile(s.cfg.StateDir, s.task.Key, j), &steps[j])
			if err != nil {
				return false, err
			}
			done[j] = ok && steps[j].CompletionTime != nil
			all = all && done[j]
		}
		return all, nil
	})
	return steps, err
}

type verdict struct {
	failed, retriable bool
	reason, message   string
	// stepReason is set when the whole task was stopped from outside its steps.
	stepReason string
}

// verdict reads an attempt's outcome from its steps, with Tekton's reasons and
// messages (pkg/reconciler/taskrun, pkg/pod/status.go).
func (s *step) verdict(steps []plan.StepState) verdict {
	tr := s.task.TaskRun
	for _, st := range steps {
		switch st.Reason {
		case ReasonCancelled:
			return verdict{failed: true, reason: reasonTaskCancel, stepReason: reasonTaskCancel,
				message: fmt.Sprintf("TaskRun %q was cancelled. %s", tr, v1.TaskRunCancelledByPipelineMsg)}
		case reasonTaskCancel:
			return verdict{failed: true, reason: reasonTaskCancel, stepReason: reasonTaskCancel,
				message: fmt.Sprintf("TaskRun %q was cancelled. %s", tr, v1.TaskRunCancelledByPipelineTimeoutMsg)}
		}
	}
	for _, st := range steps {
		if st.Reason == reasonTaskTimeout {
			return verdict{failed: true, retriable: true, reason: reasonTaskTimeout, stepReason: reasonTaskTimeout,
				message: fmt.Sprintf("TaskRun %q failed to finish within %q", tr, s.task.Timeout.Duration.String())}
		}
	}
	for _, st := range steps {
		container := entrypoint.GetContainerName(st.Name)
		switch st.Reason {
		case ReasonError:
			code := int32(1)
			if st.ExitCode != nil {
				code = *st.ExitCode
			}
			return verdict{failed: true, retriable: true, reason: v1.TaskRunReasonFailed.String(),
				message: fmt.Sprintf("%q exited with code %d", container, code)}
		case ReasonTimeoutExceeded:
			return verdict{failed: true, retriable: true, reason: v1.TaskRunReasonFailed.String(),
				message: fmt.Sprintf("%q exited because the step exceeded the specified timeout limit", container)}
		}
	}
	return verdict{}
}

// retry archives attempt k and starts attempt k+1 once every step cleaned up.
func (s *step) retry(k int, steps []plan.StepState, v verdict, now metav1.Time) error {
	failed := plan.TaskState{
		Key: s.task.Key, Phase: plan.PhaseFailed, Reason: v.reason, Message: v.message,
		StartTime: s.cur.StartTime, CompletionTime: &now, RetryCount: k, Steps: steps,
	}
	for j := range s.task.Steps {
		if err := removeIfExists(plan.StepFile(s.cfg.StateDir, s.task.Key, j)); err != nil {
			return err
		}
	}
	start := metav1.Now()
	s.cur = &plan.TaskState{
		Key: s.task.Key, Phase: plan.PhaseRunning, StartTime: &start, RetryCount: k + 1,
		Attempts: append(append([]plan.TaskState(nil), s.cur.Attempts...), failed),
	}
	// Publishing RetryCount k+1 is what tells the other steps to clean up.
	if err := writeState(s.cfg.StateDir, s.cur); err != nil {
		return err
	}
	want := strconv.Itoa(k + 1)
	dirs := []string{filepath.Join(plan.TaskDir(s.cfg.StateDir, s.task.Key), ackDirName)}
	err := waitFor(context.Background(), s.cfg.Poll, dirs, func() (bool, error) {
		for j := 1; j < len(s.task.Steps); j++ {
			b, err := os.ReadFile(ackFile(s.cfg.StateDir, s.task.Key, j))
			if errors.Is(err, os.ErrNotExist) || (err == nil && string(b) != want) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if err := s.clean(); err != nil {
		return err
	}
	if err := removeContents(s.cfg.ResultsDir); err != nil {
		return err
	}
	s.info = attemptInfo{Attempt: k + 1, Start: time.Now(), FinallyStart: s.info.FinallyStart}
	return writeJSON(attemptFile(s.cfg.StateDir, s.task.Key), s.info)
}

var stepResultRef = regexp.MustCompile(`^\$\(steps\.([^.\[\])]+)\.results\.([^.\[\])]+)\)$`)

// collectResults publishes the declared results into the state volume, typed.
// A result that was not written is left out, as Tekton does.
func (s *step) collectResults() ([]v1.TaskRunResult, error) {
	var out []v1.TaskRunResult
	var errs []error
	for _, r := range s.task.Results {
		path := filepath.Join(s.cfg.ResultsDir, r.Name)
		if r.Value != "" {
			m := stepResultRef.FindStringSubmatch(strings.TrimSpace(r.Value))
			if m == nil {
				errs = append(errs, fmt.Errorf("result %q: unsupported value %q", r.Name, r.Value))
				continue
			}
			path = filepath.Join(s.cfg.StepsDir, entrypoint.GetContainerName(m[1]), "results", m[2])
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		val, err := typedValue(r.Type, b)
		if err != nil {
			errs = append(errs, fmt.Errorf("result %q: %w", r.Name, err))
			continue
		}
		if err := writeAtomic(filepath.Join(plan.ResultsDir(s.cfg.StateDir, s.task.Key), r.Name), b); err != nil {
			return nil, err
		}
		out = append(out, v1.TaskRunResult{Name: r.Name, Type: v1.ResultsType(val.Type), Value: val})
	}
	return out, errors.Join(errs...)
}

// typedValue reads a result file by its declared type: a string result is taken
// verbatim even when it looks like JSON.
func typedValue(t v1.ResultsType, b []byte) (v1.ResultValue, error) {
	switch t {
	case v1.ResultsTypeArray:
		var a []string
		if err := json.Unmarshal(b, &a); err != nil {
			return v1.ResultValue{}, fmt.Errorf("not a JSON array of strings: %w", err)
		}
		return v1.ResultValue{Type: v1.ParamTypeArray, ArrayVal: a}, nil
	case v1.ResultsTypeObject:
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return v1.ResultValue{}, fmt.Errorf("not a JSON object of strings: %w", err)
		}
		return v1.ResultValue{Type: v1.ParamTypeObject, ObjectVal: m}, nil
	}
	return v1.ResultValue{Type: v1.ParamTypeString, StringVal: string(b)}, nil
}
