package plan

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// ReadReport folds the reporter container's log into the latest state of each task.
// done tells whether the final marker was seen, i.e. every task of the plan is terminal.
//
// The log may come from the pods/log API (optionally with timestamps=true) or straight
// from a CRI log file ("<time> stdout F <line>", long lines split into "P" parts), and
// may end in a line cut short while the reporter was still writing: lines that do not
// parse are ignored rather than failing the whole read, since a later read of the same
// log will see them complete. Only an error of r itself is returned.
//
// ReadReport takes every key a line names; (*Plan).ReadReport, which keeps only the
// plan's tasks, is the one to use wherever the plan is at hand.
func ReadReport(r io.Reader) (states map[string]TaskState, done bool, err error) {
	return readReport(r, func(string) bool { return true })
}

// ReadReport is the package's ReadReport keeping only the states of the plan's own
// tasks: a line about any other key, which no reporter of this plan would write, is
// ignored rather than allowed to add a task the controller would then report on.
func (p *Plan) ReadReport(r io.Reader) (states map[string]TaskState, done bool, err error) {
	known := make(map[string]bool, len(p.Tasks))
	for _, t := range p.Tasks {
		known[t.Key] = true
	}
	return readReport(r, func(key string) bool { return known[key] })
}

func readReport(r io.Reader, known func(key string) bool) (states map[string]TaskState, done bool, err error) {
	states = map[string]TaskState{}
	br := bufio.NewReader(r)
	var partial strings.Builder
	for {
		// ReadString rather than a Scanner: a line carrying large results can exceed
		// any fixed token size.
		line, rerr := br.ReadString('\n')
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return states, done, rerr
		}
		if content, complete := logContent(strings.TrimRight(line, "\r\n"), &partial); complete {
			var l ReportLine
			if json.Unmarshal([]byte(content), &l) == nil {
				if l.Task != nil && l.Task.Key != "" && known(l.Task.Key) {
					states[l.Task.Key] = *l.Task
				}
				done = done || l.Done
			}
		}
		// Any other read error returned above: this is the end of the log.
		if errors.Is(rerr, io.EOF) {
			return states, done, nil
		}
	}
}

// logContent strips the prefixes a log line may carry and joins CRI partial lines.
func logContent(line string, partial *strings.Builder) (string, bool) {
	if line == "" {
		return "", false
	}
	if line[0] == '{' {
		return line, true
	}
	if f := strings.SplitN(line, " ", 4); len(f) == 4 && (f[1] == "stdout" || f[1] == "stderr") && (f[2] == "P" || f[2] == "F") {
		if f[1] == "stderr" {
			return "", false
		}
		partial.WriteString(f[3])
		if f[2] == "P" {
			return "", false
		}
		s := partial.String()
		partial.Reset()
		return s, true
	}
	// pods/log with timestamps=true: "<RFC3339> <line>".
	if i := strings.IndexByte(line, ' '); i >= 0 && i+1 < len(line) && line[i+1] == '{' {
		return line[i+1:], true
	}
	return "", false
}
