package serve

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// enrolErr maps a failed Store.Enrol to its answer. A failure of the server's disk (no space,
// permissions, I/O) is the server's fault: 507 or 500, with a message that names no server path
// (the full error goes to the log). Anything else is the request's fault (a conflicting genus...):
// 422, its message with any server path reduced to the file's base name.
func (s *Server) enrolErr(err error) error {
	path := ""
	if p, ok := s.cfg.Store.(interface{ Path() string }); ok {
		path = p.Path()
	}
	if storageFailure(err) {
		s.log.Error("serve: enrolment not saved", "err", err)
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return fail(http.StatusInsufficientStorage, "storage", "the enrolment could not be saved: the server's disk is full; nothing was changed")
		}
		return fail(http.StatusInternalServerError, "storage", "the enrolment could not be saved (a storage failure on the server); nothing was changed")
	}
	msg := err.Error()
	if path != "" {
		msg = strings.ReplaceAll(msg, path, filepath.Base(path))
	}
	return fail(http.StatusUnprocessableEntity, "", "%s", msg)
}

// storageFailure reports whether err comes from the file system rather than from the request.
func storageFailure(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	var se *os.SyscallError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &le) || errors.As(err, &se) || errors.As(err, &errno)
}

// staleTempAge is how old a temporary file next to the prototype file must be to count as left by
// a crash: a writer that is alive (another server, `protoherb prototypes add`) keeps touching its
// own until it renames it.
const staleTempAge = time.Minute

// removeStaleTemps deletes the temporary files that an atomic write of path (package atomicfile:
// ".NAME.tmp-*" in the same folder) left behind when the process was killed mid-write. Failures
// are logged, never fatal: a leftover costs disk space, not correctness.
func removeStaleTemps(path string, log *slog.Logger) int {
	dir, base := filepath.Dir(path), filepath.Base(path)
	matches, err := filepath.Glob(filepath.Join(dir, "."+escapeGlob(base)+".tmp-*"))
	if err != nil {
		return 0
	}
	n := 0
	for _, m := range matches {
		fi, err := os.Lstat(m)
		if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < staleTempAge {
			continue
		}
		if err := os.Remove(m); err != nil {
			log.Warn("serve: cannot remove a temporary file left by a crash", "file", m, "err", err)
			continue
		}
		log.Info("serve: removed a temporary file left by an interrupted write", "file", m, "bytes", fi.Size())
		n++
	}
	return n
}

// escapeGlob quotes the glob metacharacters of a file name.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
