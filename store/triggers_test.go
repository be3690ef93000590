package store

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kilnci/kiln/proto/kilnpb"
)

func queued(pipeline string) *kilnpb.QueuedTrigger {
	return &kilnpb.QueuedTrigger{Pipeline: pipeline, At: 1000,
		Trigger: &kilnpb.Trigger{Kind: "webhook"}}
}

func keyed(item *kilnpb.QueuedTrigger, keys ...string) *kilnpb.QueuedTrigger {
	item.Keys = keys
	return item
}

func TestAFailedTriggerGivesUpItsDeliveryKeys(t *testing.T) {
	t.Parallel()
	s := open(t)
	item := keyed(queued("a"), "github:1", "sha256:x")
	if _, err := s.Enqueue(item, nil); err != nil {
		t.Fatal(err)
	}
	ignored := keyed(queued("a"), "github:2")
	if _, err := s.Enqueue(ignored, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Unqueue(item.Id, &kilnpb.TriggerEvent{Outcome: "failed"}, "a", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Unqueue(ignored.Id, &kilnpb.TriggerEvent{Outcome: "ignored"}, "a", false); err != nil {
		t.Fatal(err)
	}
	if dup, _ := s.Enqueue(keyed(queued("a"), "sha256:x"), nil); dup {
		t.Error("the redelivery of a failed trigger was refused")
	}
	if dup, _ := s.Enqueue(keyed(queued("a"), "github:2"), nil); !dup {
		t.Error("the redelivery of an ignored trigger was taken")
	}
}

func TestARedeliveryIsNotQueuedTwice(t *testing.T) {
	t.Parallel()
	s := open(t)
	dup, err := s.Enqueue(keyed(queued("a"), "github:1"), nil)
	if err != nil || dup {
		t.Fatalf("first delivery: dup %v, %v", dup, err)
	}
	dup, err = s.Enqueue(keyed(queued("a"), "github:1"), nil)
	if err != nil || !dup {
		t.Fatalf("redelivery: dup %v, %v", dup, err)
	}
	// The same ID for another pipeline is another delivery.
	if dup, _ := s.Enqueue(keyed(queued("b"), "github:1"), nil); dup {
		t.Fatal("a delivery to another pipeline was taken for a redelivery")
	}
	items, err := s.Queued()
	if err != nil || len(items) != 2 || items[0].Pipeline != "a" || items[1].Pipeline != "b" {
		t.Fatalf("queue: %v %v", items, err)
	}
	// Forgetting a pipeline forgets its deliveries and queue.
	if err := s.ForgetTriggers("a"); err != nil {
		t.Fatal(err)
	}
	if items, _ := s.Queued(); len(items) != 1 || items[0].Pipeline != "b" {
		t.Fatalf("queue after forgetting a: %v", items)
	}
	if dup, _ := s.Enqueue(keyed(queued("a"), "github:1"), nil); dup {
		t.Fatal("a pipeline created again remembers the deliveries of the old one")
	}
	// Any one key seen before makes a redelivery.
	if dup, _ := s.Enqueue(keyed(queued("b"), "github:2", "github:1"), nil); !dup {
		t.Fatal("a delivery with a known body hash under a new ID was queued")
	}
	if n, err := s.PruneDeliveries(1001); err != nil || n != 2 {
		t.Fatalf("pruned %d, %v; want 2", n, err)
	}
}

func TestATriggerBecomesExactlyOneRun(t *testing.T) {
	t.Parallel()
	s := open(t)
	item := queued("a")
	if _, err := s.Enqueue(item, func(st *kilnpb.TriggerState) { st.PollCommit = "abc" }); err != nil {
		t.Fatal(err)
	}
	run := &kilnpb.Run{Pipeline: "a", Status: "queued"}
	ev := &kilnpb.TriggerEvent{Outcome: "started"}
	if err := s.CreateTriggeredRun(run, item.Id, ev, func(st *kilnpb.TriggerState) { st.Tip = "abc" }); err != nil {
		t.Fatal(err)
	}
	again := &kilnpb.Run{Pipeline: "a", Status: "queued"}
	if err := s.CreateTriggeredRun(again, item.Id, &kilnpb.TriggerEvent{}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second run of one trigger: %v", err)
	}
	runs, _ := s.Runs("a", 10, 0)
	if len(runs) != 1 || ev.RunId != run.Id {
		t.Fatalf("runs %v, event run %d", runs, ev.RunId)
	}
	evs, _ := s.Events("a", 10)
	if len(evs) != 1 || evs[0].RunId != run.Id {
		t.Fatalf("events %v", evs)
	}
	st, _ := s.TriggerState("a")
	if st.PollCommit != "abc" || st.Tip != "abc" {
		t.Fatalf("state %v", st)
	}
}

func TestASucceededRunIsMarkedForItsDownstreamUntilFannedOut(t *testing.T) {
	t.Parallel()
	s := open(t)
	ok := &kilnpb.Run{Pipeline: "up", Status: "queued"}
	failed := &kilnpb.Run{Pipeline: "up", Status: "queued"}
	for _, r := range []*kilnpb.Run{ok, failed} {
		if err := s.CreateRun(r); err != nil {
			t.Fatal(err)
		}
	}
	ok.Status, failed.Status = "succeeded", "failed"
	if err := s.PutRuns([]*kilnpb.Run{ok, failed}); err != nil {
		t.Fatal(err)
	}
	// Saved again after it ended, a run is not marked again.
	if err := s.PutRuns([]*kilnpb.Run{ok}); err != nil {
		t.Fatal(err)
	}
	ids, err := s.Succeeded()
	if err != nil || fmt.Sprint(ids) != fmt.Sprint([]uint64{ok.Id}) {
		t.Fatalf("marked %v, %v; want [%d]", ids, err, ok.Id)
	}
	if err := s.FanOut(ok.Id, []*kilnpb.QueuedTrigger{queued("down")}); err != nil {
		t.Fatal(err)
	}
	if err := s.FanOut(ok.Id, []*kilnpb.QueuedTrigger{queued("down")}); err != nil {
		t.Fatal(err)
	}
	items, _ := s.Queued()
	ids, _ = s.Succeeded()
	if len(items) != 1 || len(ids) != 0 {
		t.Fatalf("after fan-out: queue %v, marked %v", items, ids)
	}
}

func TestEventsKeepTheNewestFifty(t *testing.T) {
	t.Parallel()
	s := open(t)
	for i := range 60 {
		if err := s.AddEvent("a", &kilnpb.TriggerEvent{At: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.Events("a", 100)
	if err != nil || len(evs) != 50 || evs[0].At != 59 || evs[49].At != 10 {
		t.Fatalf("%d events, first %d, last %d, %v", len(evs), evs[0].GetAt(), evs[len(evs)-1].GetAt(), err)
	}
}
