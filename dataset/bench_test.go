package dataset

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// BenchmarkOpenHerbarium2020 opens a generated Herbarium 2020 train metadata.json of the real size
// (1,030,747 images, 32,094 classes, ~190 MB; PROTOHERB_BENCH_IMAGES overrides the image count) and
// reports the peak resident memory of the process.
//
//	go test ./dataset -run '^$' -bench OpenHerbarium2020 -benchtime 3x
func BenchmarkOpenHerbarium2020(b *testing.B) {
	n := 1030747
	if s := os.Getenv("PROTOHERB_BENCH_IMAGES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	dir := filepath.Join(b.TempDir(), "nybg2020", "train")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "metadata.json"))
	if err != nil {
		b.Fatal(err)
	}
	if err := WriteHerbarium2020Metadata(f, GenerateOptions{Images: n, Classes: 32094, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	st, _ := f.Stat()
	f.Close()
	b.ResetTimer()
	for b.Loop() {
		d, err := Open(filepath.Dir(dir), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if len(d.Samples) != n {
			b.Fatalf("%d samples, want %d", len(d.Samples), n)
		}
	}
	b.StopTimer()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.ReportMetric(float64(ru.Maxrss)/1024, "peakRSS-MB")
	b.ReportMetric(float64(st.Size())/1e6, "file-MB")
}
