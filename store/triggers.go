package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// The buckets of triggers (see the tree in the package comment):
//
//	trigger_queue                  sequence: the last item ID given
//	  <item id> -> kilnpb.QueuedTrigger
//	trigger_deliveries
//	  <pipeline> 0x00 <delivery id> -> int64 ms, when it was taken
//	trigger_state
//	  <pipeline> -> kilnpb.TriggerState
//	trigger_events
//	  <pipeline>/                  sequence: the last event number
//	    <n> -> kilnpb.TriggerEvent
//	runs_succeeded
//	  <run id> -> empty; runs that succeeded and whose downstream
//	              pipelines have not been queued yet
var (
	bucketQueue      = []byte("trigger_queue")
	bucketDeliveries = []byte("trigger_deliveries")
	bucketTrigState  = []byte("trigger_state")
	bucketTrigEvents = []byte("trigger_events")
	bucketSucceeded  = []byte("runs_succeeded")
)

// keepEvents is how many trigger events a pipeline keeps.
const keepEvents = 50

// Enqueue stores a trigger the master owes a run. One of the item's
// delivery keys (an ID, a body's hash) that was taken for the pipeline
// before makes it a redelivery: nothing is stored and dup is true. update, when not nil, changes the pipeline's trigger
// state in the same transaction, so that what a loop remembers and what
// it queued cannot part.
func (s *Store) Enqueue(item *kilnpb.QueuedTrigger,
	update func(*kilnpb.TriggerState)) (dup bool, err error) {
	deliveries := item.Keys
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeliveries)
		for _, d := range deliveries {
			if b.Get(deliveryKey(item.Pipeline, d)) != nil {
				dup = true
				return nil
			}
		}
		for _, d := range deliveries {
			if err := b.Put(deliveryKey(item.Pipeline, d), u64(uint64(item.At))); err != nil {
				return err
			}
		}
		if update != nil {
			if err := updateState(tx, item.Pipeline, update); err != nil {
				return err
			}
		}
		return putQueued(tx, item)
	})
	if err != nil {
		return false, fmt.Errorf("store: queue a trigger of %s: %w", item.Pipeline, err)
	}
	return dup, nil
}

func putQueued(tx *bolt.Tx, item *kilnpb.QueuedTrigger) error {
	b := tx.Bucket(bucketQueue)
	id, err := b.NextSequence()
	if err != nil {
		return err
	}
	item.Id = id
	return putMessage(b, u64(id), item)
}

func deliveryKey(pipeline, delivery string) []byte {
	return append(append([]byte(pipeline), 0), delivery...)
}

// Queued returns the triggers not yet turned into runs, oldest first.
func (s *Store) Queued() ([]*kilnpb.QueuedTrigger, error) {
	var out []*kilnpb.QueuedTrigger
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueue).ForEach(func(_, v []byte) error {
			item := &kilnpb.QueuedTrigger{}
			if err := proto.Unmarshal(v, item); err != nil {
				return err
			}
			out = append(out, item)
			return nil
		})
	})
	return out, err
}

// Unqueue removes a queued trigger that will not become a run, recording
// why as the pipeline's event in the same transaction. forget gives up the
// trigger's delivery keys, so that a redelivery is taken again: for a
// trigger that failed, not for one that was rightly ignored.
func (s *Store) Unqueue(id uint64, ev *kilnpb.TriggerEvent, pipeline string, forget bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		if forget {
			if v := q.Get(u64(id)); v != nil {
				item := &kilnpb.QueuedTrigger{}
				if err := proto.Unmarshal(v, item); err != nil {
					return err
				}
				for _, k := range item.Keys {
					if err := tx.Bucket(bucketDeliveries).Delete(deliveryKey(pipeline, k)); err != nil {
						return err
					}
				}
			}
		}
		if err := q.Delete(u64(id)); err != nil {
			return err
		}
		if ev == nil {
			return nil
		}
		return addEvent(tx, pipeline, ev)
	})
}

// CreateTriggeredRun gives run the next run ID and saves it, removes the
// queued trigger it comes from, records ev (with the run's ID) and changes
// the pipeline's trigger state through update (when not nil) in one
// transaction: a trigger becomes exactly one run, even across a crash.
// A trigger that is no longer queued creates nothing and returns
// ErrNotFound.
func (s *Store) CreateTriggeredRun(run *kilnpb.Run, item uint64, ev *kilnpb.TriggerEvent,
	update func(*kilnpb.TriggerState)) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		if q.Get(u64(item)) == nil {
			return ErrNotFound
		}
		if err := q.Delete(u64(item)); err != nil {
			return err
		}
		id, err := tx.Bucket(bucketRuns).NextSequence()
		if err != nil {
			return err
		}
		run.Id, ev.RunId = id, id
		if err := putRun(tx, run); err != nil {
			return err
		}
		if update != nil {
			if err := updateState(tx, run.Pipeline, update); err != nil {
				return err
			}
		}
		return addEvent(tx, run.Pipeline, ev)
	})
}

// AddEvent records a trigger event of a pipeline, keeping the newest
// fifty.
func (s *Store) AddEvent(pipeline string, ev *kilnpb.TriggerEvent) error {
	return s.db.Update(func(tx *bolt.Tx) error { return addEvent(tx, pipeline, ev) })
}

func addEvent(tx *bolt.Tx, pipeline string, ev *kilnpb.TriggerEvent) error {
	b, err := tx.Bucket(bucketTrigEvents).CreateBucketIfNotExists([]byte(pipeline))
	if err != nil {
		return err
	}
	n, err := b.NextSequence()
	if err != nil {
		return err
	}
	if err := putMessage(b, u64(n), ev); err != nil {
		return err
	}
	if n > keepEvents {
		return b.Delete(u64(n - keepEvents))
	}
	return nil
}

// Events returns a pipeline's newest trigger events, newest first.
func (s *Store) Events(pipeline string, limit int) ([]*kilnpb.TriggerEvent, error) {
	var out []*kilnpb.TriggerEvent
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTrigEvents).Bucket([]byte(pipeline))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			ev := &kilnpb.TriggerEvent{}
			if err := proto.Unmarshal(v, ev); err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

// TriggerState returns what the trigger loops remember of a pipeline; a
// pipeline they never saw has an empty state.
func (s *Store) TriggerState(pipeline string) (*kilnpb.TriggerState, error) {
	st := &kilnpb.TriggerState{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketTrigState).Get([]byte(pipeline)); v != nil {
			return proto.Unmarshal(v, st)
		}
		return nil
	})
	return st, err
}

// UpdateTriggerState changes what the trigger loops remember of a
// pipeline through fn.
func (s *Store) UpdateTriggerState(pipeline string, fn func(*kilnpb.TriggerState)) error {
	return s.db.Update(func(tx *bolt.Tx) error { return updateState(tx, pipeline, fn) })
}

func updateState(tx *bolt.Tx, pipeline string, fn func(*kilnpb.TriggerState)) error {
	b := tx.Bucket(bucketTrigState)
	st := &kilnpb.TriggerState{}
	if v := b.Get([]byte(pipeline)); v != nil {
		if err := proto.Unmarshal(v, st); err != nil {
			return err
		}
	}
	fn(st)
	return putMessage(b, []byte(pipeline), st)
}

// Succeeded returns the runs that succeeded and whose downstream
// pipelines are not queued yet, oldest first.
func (s *Store) Succeeded() ([]uint64, error) {
	var out []uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSucceeded).ForEach(func(k, _ []byte) error {
			out = append(out, be64(k))
			return nil
		})
	})
	return out, err
}

// FanOut queues the runs that a succeeded run owes its downstream
// pipelines, and forgets the run's mark, in one transaction.
func (s *Store) FanOut(run uint64, items []*kilnpb.QueuedTrigger) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSucceeded)
		if b.Get(u64(run)) == nil {
			return nil // done before
		}
		for _, item := range items {
			if err := putQueued(tx, item); err != nil {
				return err
			}
		}
		return b.Delete(u64(run))
	})
}

// ForgetTriggers removes what the trigger buckets hold of a deleted
// pipeline: its state, events, delivery IDs and queued triggers.
func (s *Store) ForgetTriggers(pipeline string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketTrigState).Delete([]byte(pipeline)); err != nil {
			return err
		}
		events := tx.Bucket(bucketTrigEvents)
		if events.Bucket([]byte(pipeline)) != nil {
			if err := events.DeleteBucket([]byte(pipeline)); err != nil {
				return err
			}
		}
		prefix := append([]byte(pipeline), 0)
		c := tx.Bucket(bucketDeliveries).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		q := tx.Bucket(bucketQueue)
		var drop [][]byte
		err := q.ForEach(func(k, v []byte) error {
			item := &kilnpb.QueuedTrigger{}
			if err := proto.Unmarshal(v, item); err != nil {
				return err
			}
			if item.Pipeline == pipeline {
				drop = append(drop, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := q.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func putMessage(b *bolt.Bucket, key []byte, m proto.Message) error {
	data, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

// PruneDeliveries forgets delivery IDs taken before the given time (Unix
// milliseconds). Forges redeliver within days, not months.
func (s *Store) PruneDeliveries(before int64) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDeliveries).Cursor()
		for k, v := c.First(); k != nil; {
			if len(v) == 8 && int64(be64(v)) < before {
				// Seek again from a copy: a deletion moves the cursor and may
				// reuse the key's memory.
				at := bytes.Clone(k)
				if err := c.Delete(); err != nil {
					return err
				}
				n++
				k, v = c.Seek(at)
				continue
			}
			k, v = c.Next()
		}
		return nil
	})
	return n, err
}
