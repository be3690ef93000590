package store

import (
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/kilnci/kiln/proto/kilnpb"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRunsAreListedNewestFirstAndUnfinishedTracked(t *testing.T) {
	t.Parallel()
	s := open(t)
	for i, p := range []string{"a", "b", "a"} {
		r := &kilnpb.Run{Pipeline: p, Status: "queued"}
		if err := s.CreateRun(r); err != nil {
			t.Fatal(err)
		}
		if r.Id != uint64(i+1) {
			t.Fatalf("run id = %d, want %d", r.Id, i+1)
		}
	}
	if err := s.PutRuns([]*kilnpb.Run{{Id: 1, Pipeline: "a", Status: "succeeded"}}); err != nil {
		t.Fatal(err)
	}

	runs, err := s.Runs("a", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Id != 3 || runs[1].Id != 1 || runs[1].Status != "succeeded" {
		t.Fatalf("runs of a = %v", runs)
	}
	all, _ := s.Runs("", 2, 0)
	if len(all) != 2 || all[0].Id != 3 || all[1].Id != 2 {
		t.Fatalf("latest 2 runs = %v", all)
	}
	page, _ := s.Runs("", 10, 3)
	if len(page) != 2 || page[0].Id != 2 || page[1].Id != 1 {
		t.Fatalf("runs before 3 = %v", page)
	}
	if page, _ := s.Runs("a", 10, 2); len(page) != 1 || page[0].Id != 1 {
		t.Fatalf("runs of a before 2 = %v", page)
	}
	if page, _ := s.Runs("a", 10, 99); len(page) != 2 {
		t.Fatalf("runs of a before 99 = %v", page)
	}
	open, _ := s.Unfinished()
	if len(open) != 2 || open[0].Id != 2 || open[1].Id != 3 {
		t.Fatalf("unfinished = %v", open)
	}
	if _, err := s.Run(99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown run: err = %v", err)
	}
}

func TestAttemptIDsStayUniqueAcrossReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "kiln.db")
	seen := map[uint64]bool{}
	for round := 0; round < 2; round++ {
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3000; i++ {
			id, err := s.NextAttemptID()
			if err != nil {
				t.Fatal(err)
			}
			if seen[id] {
				t.Fatalf("attempt id %d handed out twice", id)
			}
			seen[id] = true
		}
		s.Close()
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "kiln.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket(bucketMeta)
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, SchemaVersion+1)
		return b.Put(keySchema, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("err = %v, want ErrNewerSchema", err)
	}
}

func readLog(t *testing.T, l *Logs, attempt uint64) string {
	t.Helper()
	buf := make([]byte, 1<<20)
	n, err := l.ReadAt(1, "build", attempt, buf, 0)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestLogAppendSkipsResentBytesAndRefusesGaps(t *testing.T) {
	t.Parallel()
	l := NewLogs(t.TempDir(), 0)
	steps := []struct {
		offset int64
		data   string
		want   int64
		gap    bool
	}{
		{0, "hello ", 6, false},
		{0, "hello ", 6, false},    // resent whole
		{3, "lo world", 11, false}, // resent in part
		{20, "lost", 11, true},     // gap
		{11, "\n\xff\x1b[31m", 18, false},
	}
	for i, s := range steps {
		got, err := l.Append(1, "build", 7, s.offset, []byte(s.data))
		if s.gap != errors.Is(err, ErrLogGap) || (!s.gap && err != nil) {
			t.Fatalf("step %d: err = %v", i, err)
		}
		if got != s.want {
			t.Fatalf("step %d: received = %d, want %d", i, got, s.want)
		}
	}
	l.Close(1, "build", 7)
	if got := readLog(t, l, 7); got != "hello world\n\xff\x1b[31m" {
		t.Fatalf("log = %q", got)
	}
}

func TestLogCapKeepsThePrefixAndMarksTheCut(t *testing.T) {
	t.Parallel()
	l := NewLogs(t.TempDir(), 10)
	l.Append(1, "build", 1, 0, []byte("0123456"))
	l.Append(1, "build", 2, 0, []byte("789abcdef"))
	n, err := l.Append(1, "build", 2, 9, []byte("more"))
	if err != nil || n != 13 {
		t.Fatalf("append past the cap: n=%d err=%v", n, err)
	}
	l.Close(1, "build", 2)
	got := readLog(t, l, 2)
	if !strings.HasPrefix(got, "789\n[kiln: log truncated") || strings.Count(got, "truncated") != 1 {
		t.Fatalf("second attempt log = %q", got)
	}
}

func TestLogResentAfterAMasterRestartIsNotWrittenTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := NewLogs(dir, 0)
	if _, err := first.Append(1, "build", 3, 0, []byte("tick 1\ntick 2\n")); err != nil {
		t.Fatal(err)
	}
	// The master dies without closing anything; a new one takes the
	// worker's whole stream again.
	second := NewLogs(dir, 0)
	n, err := second.Append(1, "build", 3, 0, []byte("tick 1\ntick 2\ntick 3\n"))
	if err != nil || n != 21 {
		t.Fatalf("resend: n=%d err=%v", n, err)
	}
	second.Close(1, "build", 3)
	if got := readLog(t, second, 3); got != "tick 1\ntick 2\ntick 3\n" {
		t.Fatalf("log = %q", got)
	}
}
