// Package testenv locates the optional shared data (../shared next to the repository) for tests, and
// skips a test with a clear message when it is absent, as it is in a user's clone.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the repository root (the folder holding go.mod), searching up from the working
// directory; tests run in their package folder.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// SharedData returns the folder of the shared data sets (PROTOHERB_SHARED_DATA, else
// <repo>/../shared/data) joined with sub, or skips the test when it does not exist.
func SharedData(tb testing.TB, sub ...string) string {
	tb.Helper()
	base := os.Getenv("PROTOHERB_SHARED_DATA")
	if base == "" {
		base = filepath.Join(RepoRoot(tb), "..", "shared", "data")
	}
	p := filepath.Join(append([]string{base}, sub...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared data %s not found (set PROTOHERB_SHARED_DATA or place ../shared next to the repository); skipping", p)
	}
	return p
}
