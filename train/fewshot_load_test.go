package train

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"protoherb/checkpoint"
	"protoherb/nn"
	"protoherb/torch"
)

// fewshot loads weights strictly: a missing or unexpected tensor is an error naming it, and a
// "module." prefix (DataParallel) is stripped.
func TestFewShotLoadsStrictly(t *testing.T) {
	data, cfg := flatRun(t, 4)
	ck, err := checkpoint.Load(filepath.Join(cfg.RunDir, checkpoint.Name(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Free()
	orig := ck.Weights
	s := torch.NewScope()
	defer s.Close()
	extra := torch.FromFloat32(s, []float32{1, 2}, 2)
	prefixed := make([]nn.Param, len(orig))
	for i, p := range orig {
		prefixed[i] = nn.Param{Name: nn.ModulePrefix + p.Name, T: p.T}
	}
	dropped := orig[len(orig)-1].Name
	for _, tc := range []struct {
		name    string
		weights []nn.Param
		wantErr string // "" = loads
	}{
		{"module. prefix", prefixed, ""},
		{"missing tensor", orig[:len(orig)-1], dropped},
		{"unexpected tensor", append(append([]nn.Param{}, orig...), nn.Param{Name: "extra.weight", T: extra}), "extra.weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *ck
			c.Weights = tc.weights
			path, err := checkpoint.Save(filepath.Join(t.TempDir(), "run"), &c, 1)
			if err != nil {
				t.Fatal(err)
			}
			_, err = FewShot(context.Background(), FewShotOptions{Model: path, Data: data, Format: "imagefolder",
				Ways: []int{2}, Shots: []int{1}, Query: 1, Episodes: 2, Seed: 3, Bar: quiet.Bar})
			if tc.wantErr == "" && err != nil {
				t.Fatalf("fewshot: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path)) {
				t.Fatalf("fewshot error = %v, want one naming %s and %q", err, path, tc.wantErr)
			}
		})
	}
}
