package store

import (
	"bytes"
	"io"
	"testing"
)

// FuzzLogAppend sends a stream in chunks, some resent, some out of place,
// and checks that what the log holds is the stream's prefix, in order,
// never a byte twice.
func FuzzLogAppend(f *testing.F) {
	f.Add([]byte("hello world\n"), []byte{3, 0, 5, 2, 7})
	f.Add([]byte("\xff\x1b[31mred\r\n"), []byte{1, 1, 1, 9})
	f.Fuzz(func(t *testing.T, stream []byte, plan []byte) {
		l := NewLogs(t.TempDir(), 0)
		var received int64
		for i := 0; i+1 < len(plan); i += 2 {
			// Each step resends from a little before what was received, or
			// jumps ahead to leave a gap.
			back, size := int64(plan[i]%8), int64(plan[i+1]%16)
			offset := max(received-back, 0)
			if plan[i]%7 == 6 {
				offset = received + 1 + back
			}
			end := min(offset+size, int64(len(stream)))
			if offset > int64(len(stream)) {
				continue
			}
			n, err := l.Append(1, "job", 1, offset, stream[offset:end])
			if offset > received {
				if err == nil {
					t.Fatalf("a chunk at %d past %d received was taken", offset, received)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			received = max(received, end)
			if n != received {
				t.Fatalf("received %d, want %d", n, received)
			}
		}
		l.Close(1, "job", 1)
		buf := make([]byte, len(stream)+1)
		n, err := l.ReadAt(1, "job", 1, buf, 0)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], stream[:received]) {
			t.Fatalf("log %q, want the stream's first %d bytes %q", buf[:n], received, stream[:received])
		}
	})
}
