package proxy

import (
	"net"
	"testing"
	"time"
)

// deadlineConn records the deadlines set on it.
type deadlineConn struct {
	net.Conn
	sets []string
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.sets = append(c.sets, "both "+t.Format(time.StampMilli))
	return nil
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.sets = append(c.sets, "read "+t.Format(time.StampMilli))
	return nil
}

func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

// TestBound: a pooled connection keeps a deadline armed for an earlier request while it ends
// no sooner than the new one and at most slack after it, and never fires early.
func TestBound(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const slack = 100 * time.Millisecond
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	stamp := func(ms int) string { return "both " + at(ms).Format(time.StampMilli) }

	dc := &deadlineConn{}
	c := &upConn{Conn: dc}
	steps := []struct {
		name     string
		deadline int    // ms after t0
		wantSet  string // "" when the armed deadline is kept
	}{
		{"nothing armed yet", 1000, stamp(1100)},
		{"a later request within the slack keeps it", 1050, ""},
		{"the armed deadline is exactly due", 1100, ""},
		{"past the armed deadline: re-armed", 1101, stamp(1201)},
		{"an earlier deadline than the armed one minus slack: re-armed", 900, stamp(1000)},
	}
	for _, st := range steps {
		dc.sets = nil
		if err := bound(c, at(st.deadline), slack); err != nil {
			t.Fatal(err)
		}
		got := ""
		if len(dc.sets) > 0 {
			got = dc.sets[0]
		}
		if got != st.wantSet || len(dc.sets) > 1 {
			t.Errorf("%s: set %q, want %q", st.name, dc.sets, st.wantSet)
		}
	}

	// A read deadline set alone (a streamed body's idle bound) makes the armed one unknown.
	_ = c.SetReadDeadline(at(5000))
	dc.sets = nil
	_ = bound(c, at(950), slack)
	if len(dc.sets) != 1 || dc.sets[0] != stamp(1050) {
		t.Errorf("after a read deadline alone: set %q, want [%s]", dc.sets, stamp(1050))
	}

	// A connection that is not pooled gets the deadline exactly.
	dc2 := &deadlineConn{}
	_ = bound(dc2, at(10), slack)
	if len(dc2.sets) != 1 || dc2.sets[0] != stamp(10) {
		t.Errorf("plain conn: set %q, want [%s]", dc2.sets, stamp(10))
	}
}

func TestDeadlineSlack(t *testing.T) {
	for _, tc := range []struct{ wait, want time.Duration }{
		{30 * time.Second, 250 * time.Millisecond},
		{time.Second, 125 * time.Millisecond},
		{80 * time.Millisecond, 10 * time.Millisecond},
		{0, 0},
	} {
		if got := deadlineSlack(tc.wait); got != tc.want {
			t.Errorf("deadlineSlack(%v) = %v, want %v", tc.wait, got, tc.want)
		}
	}
}
