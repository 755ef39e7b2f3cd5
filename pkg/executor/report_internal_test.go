package executor

import (
	"bufio"
	"io"
	"testing"
	"time"
)

// A snapshot is due once the log grew by as much as the last snapshot took (at least
// minSnapshotBytes), or a period after anything was printed; never when nothing was.
func TestSnapshotDue(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		since, size int
		after       time.Duration
		want        bool
	}{
		{name: "nothing printed, long ago", after: time.Hour},
		{name: "a little, just now", since: 100, after: time.Second},
		{name: "a little, a period ago", since: 100, after: reportSnapshotPeriod, want: true},
		{name: "the minimum spacing", since: minSnapshotBytes, want: true},
		{name: "less than a large last snapshot", since: minSnapshotBytes, size: 2 * minSnapshotBytes},
		{name: "as much as a large last snapshot", since: 2 * minSnapshotBytes, size: 2 * minSnapshotBytes, want: true},
	} {
		r := &reportWriter{w: bufio.NewWriter(io.Discard), period: reportSnapshotPeriod, since: tc.since, size: tc.size, last: t0}
		if got := r.due(t0.Add(tc.after)); got != tc.want {
			t.Errorf("%s: due = %v, want %v", tc.name, got, tc.want)
		}
	}
}
