package registry

import (
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// The registry's part of the database:
//
//	registry/                       bucket owned by this package
//	  schema -> uint64              layout version of everything below
//	  pipelines/                    sequence: the last pipeline ID given
//	    <name> -> kilnpb.Pipeline   proto-encoded
//	  versions/
//	    <pipeline ID>/              uint64 big-endian; sequence: last version
//	      <version> -> kilnpb.Version   uint64 big-endian key, proto-encoded
//
// Versions hang off the pipeline's ID, not its name, so that a pipeline
// deleted and created again under the same name starts a fresh history.
// Keys are big-endian so that bbolt's byte order is numeric order.
var (
	registryBucket  = []byte("registry")
	schemaKey       = []byte("schema")
	pipelinesBucket = []byte("pipelines")
	versionsBucket  = []byte("versions")
)

// schemaVersion is the layout above. An upgrade from an older layout goes
// in initSchema, with a test against a database kept in testdata.
const schemaVersion = 1

func initSchema(db *bbolt.DB) error {
	return db.Update(func(tx *bbolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(registryBucket)
		if err != nil {
			return err
		}
		if v := root.Get(schemaKey); v != nil {
			if got := binary.BigEndian.Uint64(v); got > schemaVersion {
				return fmt.Errorf("registry: the database has schema %d, newer than this "+
					"Kiln's %d: upgrade Kiln", got, schemaVersion)
			}
		}
		for _, b := range [][]byte{pipelinesBucket, versionsBucket} {
			if _, err := root.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return root.Put(schemaKey, u64(schemaVersion))
	})
}

func pipelines(tx *bbolt.Tx) *bbolt.Bucket {
	return tx.Bucket(registryBucket).Bucket(pipelinesBucket)
}

func versions(tx *bbolt.Tx) *bbolt.Bucket {
	return tx.Bucket(registryBucket).Bucket(versionsBucket)
}

func getPipeline(tx *bbolt.Tx, name string) (*kilnpb.Pipeline, error) {
	raw := pipelines(tx).Get([]byte(name))
	if raw == nil {
		return nil, errorf(ErrNotFound, "pipeline %q does not exist", name)
	}
	p := &kilnpb.Pipeline{}
	if err := proto.Unmarshal(raw, p); err != nil {
		return nil, fmt.Errorf("registry: decode pipeline %q: %w", name, err)
	}
	return p, nil
}

func putPipeline(tx *bbolt.Tx, p *kilnpb.Pipeline) error {
	raw, err := proto.Marshal(p)
	if err != nil {
		return fmt.Errorf("registry: encode pipeline %q: %w", p.Name, err)
	}
	return pipelines(tx).Put([]byte(p.Name), raw)
}

// insertPipeline gives p an ID and stores it, unless its name is taken.
func insertPipeline(tx *bbolt.Tx, p *kilnpb.Pipeline) error {
	b := pipelines(tx)
	if b.Get([]byte(p.Name)) != nil {
		return errorf(ErrExists, "pipeline %q already exists", p.Name)
	}
	id, err := b.NextSequence()
	if err != nil {
		return err
	}
	p.Id = id
	if _, err := versions(tx).CreateBucket(u64(id)); err != nil {
		return fmt.Errorf("registry: create versions of pipeline %q: %w", p.Name, err)
	}
	return putPipeline(tx, p)
}

// insertVersion numbers v and stores it under p; when v is ready it
// becomes p's current version. The caller stores p.
func insertVersion(tx *bbolt.Tx, p *kilnpb.Pipeline, v *kilnpb.Version) error {
	b := versions(tx).Bucket(u64(p.Id))
	if b == nil {
		return errorf(ErrNotFound, "pipeline %q has no version history", p.Name)
	}
	n, err := b.NextSequence()
	if err != nil {
		return err
	}
	v.Pipeline, v.Version = p.Name, n
	raw, err := proto.Marshal(v)
	if err != nil {
		return fmt.Errorf("registry: encode version %d of %q: %w", n, p.Name, err)
	}
	if err := b.Put(u64(n), raw); err != nil {
		return err
	}
	if v.Status == StatusReady {
		p.CurrentVersion = n
	}
	return nil
}

func getVersion(tx *bbolt.Tx, p *kilnpb.Pipeline, n uint64) (*kilnpb.Version, error) {
	var raw []byte
	if b := versions(tx).Bucket(u64(p.Id)); b != nil {
		raw = b.Get(u64(n))
	}
	if raw == nil {
		return nil, errorf(ErrNotFound, "pipeline %q has no version %d", p.Name, n)
	}
	return decodeVersion(raw)
}

// listVersions appends p's versions, oldest first, to out.
func listVersions(tx *bbolt.Tx, p *kilnpb.Pipeline, out []*kilnpb.Version) (
	[]*kilnpb.Version, error) {
	b := versions(tx).Bucket(u64(p.Id))
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(_, raw []byte) error {
		v, err := decodeVersion(raw)
		out = append(out, v)
		return err
	})
	return out, err
}

func deletePipeline(tx *bbolt.Tx, p *kilnpb.Pipeline) error {
	if err := versions(tx).DeleteBucket(u64(p.Id)); err != nil &&
		!errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	return pipelines(tx).Delete([]byte(p.Name))
}

func decodeVersion(raw []byte) (*kilnpb.Version, error) {
	v := &kilnpb.Version{}
	if err := proto.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("registry: decode version: %w", err)
	}
	return v, nil
}

func u64(n uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, n)
}
