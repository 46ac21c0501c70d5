// Package atomicfile writes files so that a reader never sees a partial one: data goes to a temporary
// file in the same directory, is synced, and is renamed over the target only when complete.
package atomicfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File is an output file being written. Commit makes it visible under its final name; Abort (or a
// failed Commit) removes the temporary file and leaves any previous file at the target untouched.
type File struct {
	*bufio.Writer
	f      *os.File
	target string
	done   bool
}

// Create starts writing target. The directory must exist.
func Create(target string) (*File, error) {
	dir := filepath.Dir(target)
	f, err := os.CreateTemp(dir, "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create temporary file for %s: %w", target, err)
	}
	// CreateTemp makes the file owner-only; outputs are ordinary files (0644 before the umask).
	if err := f.Chmod(os.FileMode(0o644 &^ umask())); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("chmod temporary file for %s: %w", target, err)
	}
	return &File{Writer: bufio.NewWriterSize(f, 1<<20), f: f, target: target}, nil
}

// Commit flushes, syncs and renames the temporary file over the target.
func (a *File) Commit() error {
	if a.done {
		return fmt.Errorf("%s: already committed or aborted", a.target)
	}
	a.done = true
	err := a.Flush()
	if err == nil {
		err = a.f.Sync()
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(a.f.Name(), a.target)
	}
	if err != nil {
		os.Remove(a.f.Name())
		return fmt.Errorf("write %s: %w", a.target, err)
	}
	// Make the rename durable.
	if d, derr := os.Open(filepath.Dir(a.target)); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Abort discards the temporary file. It is safe to call after Commit (it then does nothing), so
// `defer f.Abort()` is the usual pattern.
func (a *File) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.f.Close()
	os.Remove(a.f.Name())
}

// WriteFile writes target atomically with the bytes that fn writes; on error nothing is replaced.
func WriteFile(target string, fn func(w io.Writer) error) error {
	f, err := Create(target)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := fn(f); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	return f.Commit()
}
