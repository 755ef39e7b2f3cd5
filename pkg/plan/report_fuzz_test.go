package plan

import (
	"strings"
	"testing"
)

// FuzzReadReport reads whatever a log may hold: cut lines, CRI prefixes, JSON of any
// shape. It must not panic, and a plan's ReadReport must give only the plan's keys,
// each state filed under its own key.
func FuzzReadReport(f *testing.F) {
	for _, s := range []string{
		`{"task":{"key":"a","phase":"Succeeded","reason":"Succeeded","results":[{"name":"r","type":"string","value":"v"}]}}` + "\n" + `{"done":true}` + "\n",
		"2026-01-02T03:04:05Z stdout P {\"task\":{\"ke\n2026-01-02T03:04:05Z stdout F y\":\"b\",\"phase\":\"Running\"}}\n",
		"2026-01-02T03:04:05.1Z {\"task\":{\"key\":\"intruder\",\"phase\":\"Succeeded\"}}\n",
		"\n\r\nnot json\n{\"task\":\n{\"task\":{\"key\":\"\"}}",
		`{"task":{"key":"a","phase":"Failed","attempts":[{"key":"b"}],"steps":[{"name":"s","exitCode":1}]}}`,
		`{"snapshot":[{"key":"a","phase":"Succeeded"},{"key":"intruder","phase":"Failed"},{"key":"b"}]}` + "\n",
	} {
		f.Add(s)
	}
	p := &Plan{Tasks: []Task{{Key: "a"}, {Key: "b"}}}
	f.Fuzz(func(t *testing.T, log string) {
		if _, _, err := ReadReport(strings.NewReader(log)); err != nil {
			t.Fatalf("an error from a strings.Reader: %v", err)
		}
		states, _, err := p.ReadReport(strings.NewReader(log))
		if err != nil {
			t.Fatal(err)
		}
		for k, s := range states {
			if _, ok := p.Task(k); !ok {
				t.Errorf("state for %q, which the plan does not have", k)
			}
			if s.Key != k {
				t.Errorf("state of %q filed under %q", s.Key, k)
			}
		}
	})
}
