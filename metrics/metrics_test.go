package metrics

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fixedClock(t0 time.Time) func() time.Time {
	t := t0
	return func() time.Time { t = t.Add(time.Second); return t }
}

func TestWriteReadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	w, err := Open(path, WriterOptions{Now: fixedClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))})
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{
		{Step: 120, Phase: "train", Values: map[string]float64{"loss": 0.53, "acc": 0.87, "lr": 0.001, "images_per_s": 540}},
		{Step: 500, Phase: "val", Values: map[string]float64{"acc": 0.97, "acc_ci95": 0.004}},
		{Step: 501, Phase: "train", Values: map[string]float64{"loss": math.NaN(), "x": math.Inf(1), "y": math.Inf(-1)}},
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	// Unbuffered: every line is on disk before Close.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines before Close, want 3:\n%s", len(lines), data)
	}
	want0 := `{"step":120,"phase":"train","time":"2026-01-02T03:04:07Z","acc":0.87,"images_per_s":540,"loss":0.53,"lr":0.001}`
	if lines[0] != want0 {
		t.Errorf("line 1 = %s\nwant     %s", lines[0], want0)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(recs[0]); err == nil {
		t.Error("Write after Close succeeded")
	}

	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d records, want 3", len(got))
	}
	if got[1].Step != 500 || got[1].Phase != "val" || got[1].Values["acc_ci95"] != 0.004 {
		t.Errorf("record 2 = %+v", got[1])
	}
	if !got[0].Time.Equal(time.Date(2026, 1, 2, 3, 4, 7, 0, time.UTC)) {
		t.Errorf("time = %v", got[0].Time)
	}
	if v, _ := got[2].Get("loss"); !math.IsNaN(v) {
		t.Errorf("loss = %v, want NaN", v)
	}
	if got[2].Values["x"] != math.Inf(1) || got[2].Values["y"] != math.Inf(-1) {
		t.Errorf("infinities = %v", got[2].Values)
	}
}

func TestBufferedWriterFlushesOnClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	w, err := Open(path, WriterOptions{FlushEvery: time.Hour, Now: fixedClock(time.Unix(0, 0))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := w.Write(Record{Step: int64(i), Phase: "train", Values: map[string]float64{"loss": 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := os.Stat(path); st.Size() != 0 {
		t.Errorf("buffered writer wrote %d bytes before the interval", st.Size())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil || len(got) != 10 {
		t.Fatalf("after Close: %d records, err %v", len(got), err)
	}
}

func TestBufferedWriterFlushesAfterInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	now := time.Unix(0, 0)
	w, err := Open(path, WriterOptions{FlushEvery: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(Record{Step: 1, Phase: "train"})
	now = now.Add(2 * time.Minute)
	w.Write(Record{Step: 2, Phase: "train"})
	got, err := ReadFile(path)
	if err != nil || len(got) != 2 {
		t.Fatalf("after the interval: %d records on disk, err %v", len(got), err)
	}
}

func TestTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	good := `{"step":1,"phase":"train","loss":2}` + "\n"
	if err := os.WriteFile(path, []byte(good+`{"step":2,"pha`), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil || len(got) != 1 {
		t.Fatalf("torn tail: %d records, err %v", len(got), err)
	}
	w, err := Open(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(Record{Step: 2, Phase: "train", Values: map[string]float64{"loss": 1}})
	w.Close()
	got, err = ReadFile(path)
	if err != nil || len(got) != 2 || got[1].Values["loss"] != 1 {
		t.Fatalf("append after torn tail: %+v, err %v", got, err)
	}
}

func TestReadErrorsNameTheLine(t *testing.T) {
	in := `{"step":1,"phase":"train"}` + "\n" + `not json` + "\n" + `{"step":3}` + "\n"
	_, err := Read(strings.NewReader(in), "run/metrics.jsonl")
	if err == nil || !strings.Contains(err.Error(), "run/metrics.jsonl:2:") {
		t.Fatalf("err = %v, want one naming run/metrics.jsonl:2", err)
	}
	_, err = Read(strings.NewReader(`{"phase":"train"}`+"\n"), "m")
	if err == nil || !strings.Contains(err.Error(), `no "step"`) {
		t.Fatalf("missing step: err = %v", err)
	}
}

func TestRewind(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	w, _ := Open(path, WriterOptions{})
	for i := int64(1); i <= 5; i++ {
		w.Write(Record{Step: i * 100, Phase: "train", Values: map[string]float64{"loss": float64(i)}})
	}
	w.Close()
	if err := Rewind(path, 300); err != nil {
		t.Fatal(err)
	}
	got, _ := ReadFile(path)
	if len(got) != 3 || got[2].Step != 300 {
		t.Fatalf("after Rewind(300): %+v", got)
	}
	if err := Rewind(filepath.Join(t.TempDir(), "absent.jsonl"), 1); err != nil {
		t.Errorf("Rewind of a missing file: %v", err)
	}
}

func TestReservedValueName(t *testing.T) {
	if _, err := (Record{Step: 1, Values: map[string]float64{"step": 2}}).MarshalJSON(); err == nil {
		t.Error("a value named step was accepted")
	}
}
