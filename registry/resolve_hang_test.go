package registry

import (
	"context"
	"net"
	"testing"
	"time"
)

// git's HTTP helper outlives a killed git and holds its pipes: a remote
// that accepts and never answers must still not hold Resolve past its
// context.
func TestResolveEndsPromptlyWhenASilentRemoteIsCancelled(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(held)
				return
			}
			held <- c // hold it open, say nothing
		}
	}()
	defer func() {
		ln.Close()
		for c := range held {
			c.Close()
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Resolve(ctx, "http://"+ln.Addr().String()+"/x.git", "main")
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if took := time.Since(start); took > 5*time.Second || err == nil {
			t.Errorf("Resolve returned %v after %v; want an error within 5s", err, took)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Resolve still runs 20s after its context was cancelled")
	}
}
