// Package store keeps the master's state in bbolt and its job logs in
// files. It owns the database file, its schema version and the buckets for
// runs; the registry and the cache own theirs in the same file.
//
// The bucket tree:
//
//	meta
//	  schema -> uint64, the schema version (big-endian)
//	runs
//	  <run id> -> kilnpb.Run (protobuf)
//	runs_active
//	  <run id> -> empty; the runs that have not ended
//	runs_by_pipeline
//	  <pipeline name>
//	    <run id> -> empty
//	sequences
//	  attempts -> uint64, the highest attempt ID handed out
//	workers_suspended
//	  <worker name> -> empty; suspended by an operator
//	trigger_queue, trigger_deliveries, trigger_state, trigger_events,
//	runs_succeeded
//	  what starts runs besides `ci run`; drawn in triggers.go
//
// IDs are big-endian uint64 so that keys sort by ID.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// SchemaVersion is the layout this code reads and writes. Open upgrades an
// older database and refuses a newer one.
const SchemaVersion = 1

// Errors of the store, matched with errors.Is.
var (
	// ErrNotFound is returned for a run that does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrNewerSchema is returned by Open for a database written by a
	// newer Kiln.
	ErrNewerSchema = errors.New("store: the database was written by a newer Kiln")
)

var (
	bucketMeta       = []byte("meta")
	bucketRuns       = []byte("runs")
	bucketActive     = []byte("runs_active")
	bucketByPipeline = []byte("runs_by_pipeline")
	bucketSequences  = []byte("sequences")
	bucketSuspended  = []byte("workers_suspended")
	keySchema        = []byte("schema")
	keyAttempts      = []byte("attempts")
)

// attemptBlock is how many attempt IDs one write reserves.
const attemptBlock = 1024

// Store is the master's database.
type Store struct {
	db *bolt.DB

	mu          sync.Mutex
	nextAttempt uint64 // guarded by mu
	lastAttempt uint64 // guarded by mu: the reserved block ends here
}

// Open opens or creates the database at path.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s is in use by another master", path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := db.Update(upgrade); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// upgrade creates the buckets and brings an older schema up to date.
func upgrade(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	version := uint64(0)
	if v := meta.Get(keySchema); v != nil {
		version = binary.BigEndian.Uint64(v)
	}
	if version > SchemaVersion {
		return fmt.Errorf("%w (schema %d, this Kiln reads %d): upgrade ci",
			ErrNewerSchema, version, SchemaVersion)
	}
	for _, b := range [][]byte{bucketRuns, bucketActive, bucketByPipeline, bucketSequences,
		bucketSuspended, bucketQueue, bucketDeliveries, bucketTrigState, bucketTrigEvents,
		bucketSucceeded} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	// Schema 1 is the first; later versions add their steps here, each
	// tested against a database kept in testdata. New buckets alone need
	// no step: they are created above.
	return meta.Put(keySchema, u64(SchemaVersion))
}

// DB returns the bbolt database, for the packages that own other buckets.
func (s *Store) DB() *bolt.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// NextAttemptID returns a fresh attempt ID. IDs are reserved in blocks, so
// that most calls write nothing; a restart skips the rest of a block.
func (s *Store) NextAttemptID() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nextAttempt == 0 || s.nextAttempt > s.lastAttempt {
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketSequences)
			hi := uint64(0)
			if v := b.Get(keyAttempts); v != nil {
				hi = binary.BigEndian.Uint64(v)
			}
			s.nextAttempt, s.lastAttempt = hi+1, hi+attemptBlock
			return b.Put(keyAttempts, u64(s.lastAttempt))
		})
		if err != nil {
			return 0, fmt.Errorf("store: reserve attempt IDs: %w", err)
		}
	}
	id := s.nextAttempt
	s.nextAttempt++
	return id, nil
}

// CreateRun gives run the next run ID and saves it.
func (s *Store) CreateRun(run *kilnpb.Run) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		id, err := tx.Bucket(bucketRuns).NextSequence()
		if err != nil {
			return err
		}
		run.Id = id
		return putRun(tx, run)
	})
}

// PutRuns saves runs in one transaction.
func (s *Store) PutRuns(runs []*kilnpb.Run) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range runs {
			if err := putRun(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
}

func putRun(tx *bolt.Tx, r *kilnpb.Run) error {
	data, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	key := u64(r.Id)
	if err := tx.Bucket(bucketRuns).Put(key, data); err != nil {
		return err
	}
	active := tx.Bucket(bucketActive)
	if final(r.Status) {
		// A run that succeeds now owes its downstream pipelines their runs;
		// the mark is taken in this transaction, so a crash cannot lose it.
		if r.Status == "succeeded" && active.Get(key) != nil {
			if err := tx.Bucket(bucketSucceeded).Put(key, nil); err != nil {
				return err
			}
		}
		err = active.Delete(key)
	} else {
		err = active.Put(key, nil)
	}
	if err != nil {
		return err
	}
	byP, err := tx.Bucket(bucketByPipeline).CreateBucketIfNotExists([]byte(r.Pipeline))
	if err != nil {
		return err
	}
	return byP.Put(key, nil)
}

func final(status string) bool {
	switch status {
	case "succeeded", "failed", "cancelled":
		return true
	}
	return false
}

// Run returns one run.
func (s *Store) Run(id uint64) (*kilnpb.Run, error) {
	var r *kilnpb.Run
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getRun(tx, id)
		return err
	})
	return r, err
}

func getRun(tx *bolt.Tx, id uint64) (*kilnpb.Run, error) {
	v := tx.Bucket(bucketRuns).Get(u64(id))
	if v == nil {
		return nil, fmt.Errorf("run %d: %w", id, ErrNotFound)
	}
	r := &kilnpb.Run{}
	if err := proto.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("store: run %d: %w", id, err)
	}
	return r, nil
}

// Runs returns up to limit runs, newest first, of one pipeline or of all
// when pipeline is "", with IDs below before when it is not zero. It reads
// only the runs it returns.
func (s *Store) Runs(pipeline string, limit int, before uint64) ([]*kilnpb.Run, error) {
	var out []*kilnpb.Run
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRuns)
		if pipeline != "" {
			b = tx.Bucket(bucketByPipeline).Bucket([]byte(pipeline))
			if b == nil {
				return nil
			}
		}
		c := b.Cursor()
		k, _ := c.Last()
		if before > 0 {
			// Seek lands on before or the key after it; either way the
			// page starts at the key below.
			if k, _ = c.Seek(u64(before)); k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
		for ; k != nil && (limit <= 0 || len(out) < limit); k, _ = c.Prev() {
			r, err := getRun(tx, binary.BigEndian.Uint64(k))
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// Unfinished returns the runs that have not ended, oldest first.
func (s *Store) Unfinished() ([]*kilnpb.Run, error) {
	var out []*kilnpb.Run
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketActive).ForEach(func(k, _ []byte) error {
			r, err := getRun(tx, binary.BigEndian.Uint64(k))
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// SetSuspended records whether the named worker is suspended, so that a
// suspension outlives a restart of the master.
func (s *Store) SetSuspended(name string, on bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSuspended)
		if on {
			return b.Put([]byte(name), nil)
		}
		return b.Delete([]byte(name))
	})
}

// Suspended returns the names of the suspended workers.
func (s *Store) Suspended() ([]string, error) {
	var names []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSuspended).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	return names, err
}

// DeleteRuns removes every run of a pipeline, for a pipeline that is
// deleted, and returns their IDs.
func (s *Store) DeleteRuns(pipeline string) ([]uint64, error) {
	var ids []uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		byP := tx.Bucket(bucketByPipeline)
		b := byP.Bucket([]byte(pipeline))
		if b == nil {
			return nil
		}
		err := b.ForEach(func(k, _ []byte) error {
			ids = append(ids, binary.BigEndian.Uint64(k))
			if err := tx.Bucket(bucketRuns).Delete(k); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSucceeded).Delete(k); err != nil {
				return err
			}
			return tx.Bucket(bucketActive).Delete(k)
		})
		if err != nil {
			return err
		}
		return byP.DeleteBucket([]byte(pipeline))
	})
	return ids, err
}

func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
