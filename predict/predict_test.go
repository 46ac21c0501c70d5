package predict

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"protoherb/proto"
	"protoherb/search"
)

func prototypes(t *testing.T) *proto.Index {
	t.Helper()
	s, err := proto.New(2, "m", []proto.Class{{ID: 10, Name: "a"}, {ID: 20, Name: "b"}, {ID: 30, Name: "c"}}, proto.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Class 20 has the most images (the fallback for unreadable images).
	if err := s.Accumulate([]float32{0, 0, 10, 0, 10, 0, 0, 10}, []int64{10, 20, 20, 30}, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "p.safetensors")
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	x, err := proto.Open(path, proto.OpenOptions{Metric: search.L2, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	return x
}

func TestRunNearestAndFallback(t *testing.T) {
	e := &proto.Embeddings{Dim: 2, Model: "m", IDs: []int64{1, 2, 3}, Labels: []int64{-1, -1, -1},
		Vectors: []float32{9, 1, 1, 9, 0, 0}, Failed: []int64{3}}
	r, err := Run(context.Background(), prototypes(t), e, 2)
	if err != nil {
		t.Fatal(err)
	}
	if r.Pred[0] != 20 || r.Pred[1] != 30 {
		t.Fatalf("predictions %v, want 20 and 30 for the first two", r.Pred)
	}
	if r.Pred[2] != 20 || r.Fallback != 20 {
		t.Fatalf("unreadable image got %d (fallback %d), want the most frequent class 20", r.Pred[2], r.Fallback)
	}
	if len(r.Ranked[0]) != 2 || r.Ranked[0][0].Distance > r.Ranked[0][1].Distance {
		t.Fatalf("top-k not ranked: %v", r.Ranked[0])
	}
	dir := t.TempDir()
	if err := r.WriteSubmission(filepath.Join(dir, "s.csv")); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteFailed(filepath.Join(dir, "f.csv")); err != nil {
		t.Fatal(err)
	}
	sub, _ := os.ReadFile(filepath.Join(dir, "s.csv"))
	if got := string(sub); got != "Id,Predicted\n1,20\n2,30\n3,20\n" {
		t.Fatalf("submission %q", got)
	}
	f, _ := os.ReadFile(filepath.Join(dir, "f.csv"))
	if string(f) != "Id\n3\n" {
		t.Fatalf("failed list %q", f)
	}
}

func TestRunRejectsOtherDimension(t *testing.T) {
	e := &proto.Embeddings{Dim: 3, Model: "other", IDs: []int64{1}, Labels: []int64{-1}, Vectors: []float32{1, 2, 3}}
	_, err := Run(context.Background(), prototypes(t), e, 1)
	if err == nil || !strings.Contains(err.Error(), "different models") {
		t.Fatalf("got %v", err)
	}
	if _, err := Run(context.Background(), prototypes(t), e, 0); err == nil {
		t.Fatal("k = 0 accepted")
	}
}
