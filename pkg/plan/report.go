package plan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// MaxReportBytes bounds what one run's reported task states may weigh, each line and all
// the states kept together (their JSON). Every state ends up in a child TaskRun's status
// and, through the pipeline's results, in the CustomRun's; the API server stores an
// object of at most ~1.5 MiB (docs/design.md hazard 7), and those objects also carry
// their specs and metadata. Reading a report never buffers more than this per line.
const MaxReportBytes = 1280 << 10

// ReasonResultLargerThanAllowedLimit is Tekton's TaskRun reason for a result over its
// limit; a task whose reported state goes over a bound of Limits ends with it.
var ReasonResultLargerThanAllowedLimit = v1.TaskRunReasonResultLargerThanAllowedLimit.String()

// Limits bound what a Folder keeps.
type Limits struct {
	// MaxResultSize is Tekton's max-result-size feature flag: the largest one task or step
	// result may be, measured as Tekton measures a result under sidecar-logs results (the
	// result's JSON line). Zero leaves results bounded only by MaxBytes.
	MaxResultSize int
	// MaxBytes bounds one line, and the JSON of all the states kept together. Zero means
	// MaxReportBytes.
	MaxBytes int
}

func (l Limits) maxBytes() int {
	if l.MaxBytes > 0 {
		return l.MaxBytes
	}
	return MaxReportBytes
}

// snapshotSlack is what a snapshot line holds beyond its states: a line may carry one
// state of up to MaxBytes in a snapshot.
const snapshotSlack = 64 << 10

// LineBound is the longest line a reader of the report keeps: MaxBytes and the room a
// snapshot line needs around its states. Longer lines are refused unbuffered.
func (l Limits) LineBound() int { return l.maxBytes() + snapshotSlack }

// ReadReport folds the reporter container's log into the latest state of each task.
// done tells whether the final marker was seen, i.e. every task of the plan is terminal.
//
// The log may come from the pods/log API (optionally with timestamps=true) or straight
// from a CRI log file ("<time> stdout F <line>", long lines split into "P" parts), and
// may end in a line cut short while the reporter was still writing: lines that do not
// parse are ignored rather than failing the whole read, since a later read of the same
// log will see them complete. Only an error of r itself is returned. Memory is bounded
// by Limits whatever the log holds (see Folder).
//
// ReadReport takes every key a line names; (*Plan).ReadReport, which keeps only the
// plan's tasks, is the one to use wherever the plan is at hand.
func ReadReport(r io.Reader) (states map[string]TaskState, done bool, err error) {
	f := NewFolder(nil, Limits{})
	err = f.Fold(r)
	return f.States(), f.Done(), err
}

// ReadReport is the package's ReadReport keeping only the states of the plan's own
// tasks: a line about any other key, which no reporter of this plan would write, is
// ignored rather than allowed to add a task the controller would then report on. It
// applies no max-result-size; the controller folds with its configured one (NewFolder).
func (p *Plan) ReadReport(r io.Reader) (states map[string]TaskState, done bool, err error) {
	f := p.NewFolder(Limits{})
	err = f.Fold(r)
	return f.States(), f.Done(), err
}

// Folder folds report lines (or states, for the reporter itself) into the latest state
// of each task, in bounded memory:
//
//   - a line longer than Limits.LineBound is never buffered whole: its task (read from
//     the line's start) fails with ReasonResultLargerThanAllowedLimit;
//   - a state with a result over Limits.MaxResultSize fails its task the same way, as
//     Tekton fails a TaskRun whose result is over max-result-size;
//   - a state that would bring the JSON of all states kept over Limits.MaxBytes fails its
//     task the same way (the per-run total; what is kept then weighs at most that, plus
//     the few hundred bytes of each refusal);
//   - a terminal state is final: a later line about the task (a snapshot re-printing it,
//     or an older line read again) never changes it.
//
// The reporter folds its own states with the same rules, so what it prints, what the
// controller keeps and what a snapshot holds are bounded alike. A Folder is not safe for
// concurrent use.
type Folder struct {
	known  func(key string) bool
	order  map[string]int
	limits Limits
	states map[string]TaskState
	// raws holds the JSON of each state kept: what it weighs, and what tells a
	// state that changed from one printed again.
	raws  map[string][]byte
	total int
	done  bool
	// partial joins CRI "P" lines; partialLen counts the whole joined line.
	partial    []byte
	partialLen int
}

// NewFolder folds the states of the plan's tasks only.
func (p *Plan) NewFolder(l Limits) *Folder {
	f := NewFolder(nil, l)
	f.known = func(key string) bool { _, ok := f.order[key]; return ok }
	for i, t := range p.Tasks {
		f.order[t.Key] = i
	}
	return f
}

// NewFolder folds the states of the keys known accepts (every key when nil).
func NewFolder(known func(key string) bool, l Limits) *Folder {
	if known == nil {
		known = func(string) bool { return true }
	}
	return &Folder{known: known, order: map[string]int{}, limits: l, states: map[string]TaskState{}, raws: map[string][]byte{}}
}

// States returns a copy of the states kept, by key.
func (f *Folder) States() map[string]TaskState {
	out := make(map[string]TaskState, len(f.states))
	for k, s := range f.states {
		out[k] = s
	}
	return out
}

// Done tells whether the reporter's final marker was read.
func (f *Folder) Done() bool { return f.done }

// Terminal returns the terminal states kept, in plan order (by key without a plan): what
// a snapshot re-prints.
func (f *Folder) Terminal() []TaskState {
	var out []TaskState
	for _, s := range f.states {
		if s.Phase.IsTerminal() {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		oi, iok := f.order[out[i].Key]
		oj, jok := f.order[out[j].Key]
		if iok && jok && oi != oj {
			return oi < oj
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Snapshot returns the lines that re-print every terminal state kept, in plan order.
// A line holds states of at most a quarter of Limits.MaxBytes together, or one state
// (which never weighs more than MaxBytes), so that every line stays within LineBound,
// and a rotation that cuts one line short loses little of the snapshot.
func (f *Folder) Snapshot() []ReportLine {
	chunk := f.limits.maxBytes() / 4
	var out []ReportLine
	var cur []TaskState
	size := 0
	for _, st := range f.Terminal() {
		n := len(f.raws[st.Key]) + 1
		if len(cur) > 0 && size+n > chunk {
			out = append(out, ReportLine{Snapshot: cur})
			cur, size = nil, 0
		}
		cur, size = append(cur, st), size+n
	}
	if len(cur) > 0 {
		out = append(out, ReportLine{Snapshot: cur})
	}
	return out
}

// Fold reads r to its end and folds every line, the last one even if it is cut short
// (it is ignored unless it parses). It returns r's error, if any, other than io.EOF.
func (f *Folder) Fold(r io.Reader) error {
	lr := f.NewLineReader(r)
	for {
		line, n, _, err := lr.Next()
		if n > 0 {
			f.Line(line, n)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Line folds one line of the log (without its end of line). n is the line's whole
// length, of which line may hold only the start (see NewLineReader).
// It returns whether the states or the final marker changed.
func (f *Folder) Line(line []byte, n int) bool {
	content, size, ok := f.content(line, n)
	if !ok {
		return false
	}
	if size > f.limits.LineBound() {
		key, ok := keyOf(content)
		if !ok || !f.known(key) {
			return false
		}
		return f.keep(Refused(TaskState{Key: key}, fmt.Sprintf("task %q: its reported state is %d bytes or more, over the %d bytes the reported states of one run may take in all",
			key, size, f.limits.maxBytes())), false)
	}
	var l ReportLine
	if json.Unmarshal(content, &l) != nil {
		return false
	}
	changed := false
	if l.Done && !f.done {
		f.done, changed = true, true
	}
	tasks := l.Snapshot
	if l.Task != nil {
		tasks = append(tasks, *l.Task)
	}
	for _, st := range tasks {
		if st.Key != "" && f.known(st.Key) {
			_, c := f.Put(st)
			changed = changed || c
		}
	}
	return changed
}

// Put folds one state, as Line does for a line carrying it, and returns the state kept
// for its task (st, or the state that refuses it) and whether that changed.
func (f *Folder) Put(st TaskState) (TaskState, bool) {
	if old, ok := f.states[st.Key]; ok && old.Phase.IsTerminal() {
		return old, false
	}
	if msg := f.oversized(st); msg != "" {
		st = Refused(st, msg)
	}
	changed := f.keep(st, true)
	return f.states[st.Key], changed
}

// keep stores st unless it equals what is kept, refusing it when it would bring the
// states kept over the per-run total.
func (f *Folder) keep(st TaskState, checkTotal bool) bool {
	if old, ok := f.states[st.Key]; ok && old.Phase.IsTerminal() {
		return false
	}
	raw := mustJSON(st)
	others := f.total - len(f.raws[st.Key])
	if checkTotal && others+len(raw) > f.limits.maxBytes() {
		st = Refused(st, fmt.Sprintf("task %q: its reported state (%d bytes) would bring the reported states of the run to %d bytes, over the %d one run may carry (the child TaskRuns and the CustomRun must stay under the API server's object size limit)",
			st.Key, len(raw), others+len(raw), f.limits.maxBytes()))
		raw = mustJSON(st)
	}
	if old, ok := f.raws[st.Key]; ok && bytes.Equal(old, raw) {
		return false
	}
	f.total = others + len(raw)
	f.states[st.Key], f.raws[st.Key] = st, raw
	return true
}

// oversized names the first result of st over Limits.MaxResultSize.
func (f *Folder) oversized(st TaskState) string {
	limit := f.limits.MaxResultSize
	if limit <= 0 {
		return ""
	}
	check := func(where string, rs []v1.TaskRunResult) string {
		for _, r := range rs {
			if n := jsonSize(r); n > limit {
				return fmt.Sprintf("task %q: %sresult %q is %d bytes, over the max-result-size of %d bytes", st.Key, where, r.Name, n, limit)
			}
		}
		return ""
	}
	states := append([]TaskState{st}, st.Attempts...)
	for _, s := range states {
		if m := check("", s.Results); m != "" {
			return m
		}
		for _, step := range s.Steps {
			if m := check(fmt.Sprintf("step %q ", step.Name), step.Results); m != "" {
				return m
			}
		}
	}
	return ""
}

// Refused is the state of a task whose reported state went over a bound: failed with
// Tekton's reason for a result over its limit, keeping only st's times.
func Refused(st TaskState, message string) TaskState {
	return TaskState{
		Key: st.Key, Phase: PhaseFailed, Reason: ReasonResultLargerThanAllowedLimit, Message: message,
		StartTime: st.StartTime, CompletionTime: st.CompletionTime, RetryCount: st.RetryCount,
	}
}

func jsonSize(v any) int { return len(mustJSON(v)) }

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v) //nolint:errchkjson // states and results are plain data: they always marshal
	return b
}

// content strips the prefixes a log line may carry and joins CRI partial lines. size is
// the content's whole length, of which content holds at most the bound; ok is false for
// a line that carries no content (stderr, a partial part, blank).
func (f *Folder) content(line []byte, n int) (content []byte, size int, ok bool) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return nil, 0, false
	}
	if line[0] == '{' {
		return line, n, true
	}
	if _, stream, tag, rest, isCRI := criFields(line); isCRI {
		if stream == "stderr" {
			return nil, 0, false
		}
		if room := f.limits.LineBound() - len(f.partial); room > 0 {
			f.partial = append(f.partial, rest[:min(len(rest), room)]...)
		}
		f.partialLen += n - (len(line) - len(rest))
		if tag == "P" {
			return nil, 0, false
		}
		content, size := f.partial, f.partialLen
		f.partial, f.partialLen = nil, 0
		return content, size, true
	}
	// pods/log with timestamps=true: "<RFC3339> <line>".
	if i := bytes.IndexByte(line, ' '); i >= 0 && i+1 < len(line) && line[i+1] == '{' {
		return line[i+1:], n - (i + 1), true
	}
	return nil, 0, false
}

// criFields splits a CRI log file line: "<time> <stream> <P|F> <content>".
func criFields(line []byte) (ts, stream, tag string, rest []byte, ok bool) {
	f := bytes.SplitN(line, []byte(" "), 4)
	if len(f) != 4 || (string(f[1]) != "stdout" && string(f[1]) != "stderr") || (string(f[2]) != "P" && string(f[2]) != "F") {
		return "", "", "", nil, false
	}
	return string(f[0]), string(f[1]), string(f[2]), f[3], true
}

// LineTime is the timestamp a line of pods/log (timestamps=true) or of a CRI log file
// starts with: the time the container runtime received the line.
func LineTime(line []byte) (time.Time, bool) {
	i := bytes.IndexByte(line, ' ')
	if i <= 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	return t, err == nil
}

// keyOf reads the task key from the start of a line too long to parse whole: the
// reporter writes ReportLine{Task: &TaskState{Key: ...}}, whose JSON starts
// {"task":{"key":"<key>".
func keyOf(content []byte) (string, bool) {
	d := json.NewDecoder(bytes.NewReader(content))
	want := []any{json.Delim('{'), "task", json.Delim('{'), "key"}
	for _, w := range want {
		tok, err := d.Token()
		if err != nil || tok != w {
			return "", false
		}
	}
	tok, err := d.Token()
	key, ok := tok.(string)
	return key, err == nil && ok && key != ""
}

// timestampRoom is what a reader keeps of a line beyond LineBound: the timestamp prefix
// of pods/log with timestamps=true, or of a CRI log file line.
const timestampRoom = 128

// NewLineReader reads r's lines for f: at most its line bound is kept of each.
func (f *Folder) NewLineReader(r io.Reader) *LineReader {
	return NewLineReader(r, f.limits.LineBound()+timestampRoom)
}

// LineReader reads lines in bounded memory: a line longer than its bound is returned
// with only its first max bytes, and its whole length counted as it is skipped.
type LineReader struct {
	br  *bufio.Reader
	max int
	buf []byte
}

// NewLineReader reads r's lines, keeping at most bound bytes of each.
func NewLineReader(r io.Reader, bound int) *LineReader {
	return &LineReader{br: bufio.NewReaderSize(r, 64<<10), max: bound}
}

// Next returns the next line without its "\n": at most max bytes of it (valid until the
// next call), its whole length n, and whether it ended with "\n" (a stream that ends
// mid-line returns the line's start with complete false). err is io.EOF at the end.
func (l *LineReader) Next() (line []byte, n int, complete bool, err error) {
	l.buf = l.buf[:0]
	for {
		chunk, rerr := l.br.ReadSlice('\n')
		n += len(chunk)
		if room := l.max - len(l.buf); room > 0 {
			l.buf = append(l.buf, chunk[:min(len(chunk), room)]...)
		}
		switch {
		case rerr == nil:
			line := bytes.TrimSuffix(l.buf, []byte("\n"))
			if n > l.max {
				// The kept start may have lost its "\n" to the bound.
				line = l.buf
			}
			l.release()
			return line, n - 1, true, nil
		case errors.Is(rerr, bufio.ErrBufferFull):
			continue
		default:
			line := l.buf
			l.release()
			return line, n, false, rerr
		}
	}
}

// release drops a buffer grown for a long line, so a reader kept for a long stream
// holds no more than its bufio buffer between long lines.
func (l *LineReader) release() {
	if cap(l.buf) > 64<<10 {
		// The line returned keeps the old array alive until the next call only.
		l.buf = nil
	}
}
