// Command trivydb writes a vulnerability database in trivy's own format (a bbolt file) for tests.
//
// It reads JSON lines on stdin, each {"path": [bucket, ..., key], "value": <any JSON>}: every
// element but the last names a (nested) bucket, the last is the key, and the value is stored as
// its JSON encoding, which is how trivy-db stores advisories, vulnerability details and data
// sources. The database file is the only argument. Nothing is downloaded: the tests decide what
// is vulnerable.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

type entry struct {
	Path  []string        `json:"path"`
	Value json.RawMessage `json:"value"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: trivydb DB_FILE < entries.jsonl")
		os.Exit(2)
	}
	db, err := bolt.Open(os.Args[1], 0o644, nil)
	if err != nil {
		fail(err)
	}
	defer db.Close()
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	err = db.Update(func(tx *bolt.Tx) error {
		for line := 1; scanner.Scan(); line++ {
			var e entry
			if err := json.Unmarshal(scanner.Bytes(), &e); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
			if len(e.Path) < 2 {
				return fmt.Errorf("line %d: path needs a bucket and a key", line)
			}
			bucket, err := tx.CreateBucketIfNotExists([]byte(e.Path[0]))
			if err != nil {
				return err
			}
			for _, name := range e.Path[1 : len(e.Path)-1] {
				if bucket, err = bucket.CreateBucketIfNotExists([]byte(name)); err != nil {
					return err
				}
			}
			if err := bucket.Put([]byte(e.Path[len(e.Path)-1]), e.Value); err != nil {
				return err
			}
		}
		return scanner.Err()
	})
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "trivydb:", err)
	os.Exit(1)
}
