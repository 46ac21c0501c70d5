package train

import (
	"context"
	"path/filepath"
	"testing"

	"protoherb/torch"
)

// TestCUDATraining runs pretraining and then episodic training on the GPU (images decoded on the
// host, batches copied over) and checks that both losses fall as on the CPU and that the GPU run's
// checkpoint initialises a CPU run. Skipped without CUDA; on a GPU machine run the compiled test
// binary (`go test -c ./train`, then `./train.test -test.run CUDA -test.v`).
func TestCUDATraining(t *testing.T) {
	if !torch.CUDAAvailable() {
		t.Skip("no CUDA device: this test runs on a GPU machine")
	}
	data := writeFolder(t, 5, 10, 16, stripes(16))
	pre := tinyConfig(ModePretrain, data, filepath.Join(t.TempDir(), "pre"))
	pre.TopClasses, pre.Device = 4, "cuda"
	res, err := seededRun(context.Background(), pre, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if first, last := mean(res.Losses[:5]), mean(res.Losses[25:]); !(last < first*0.8) {
		t.Errorf("pretrain on the GPU: loss did not fall: %.4f → %.4f", first, last)
	}
	ep := tinyConfig(ModeEpisodic, data, filepath.Join(t.TempDir(), "ep"))
	ep.Init, ep.Device = pre.RunDir, "cuda"
	res, err = seededRun(context.Background(), ep, quiet)
	if err != nil {
		t.Fatalf("episodic training on the GPU from the GPU pretrain run: %v", err)
	}
	if len(res.Losses) != ep.Steps {
		t.Errorf("episodic run on the GPU: %d losses for %d steps", len(res.Losses), ep.Steps)
	}
	cpu := tinyConfig(ModeEpisodic, data, filepath.Join(t.TempDir(), "cpu"))
	cpu.Init, cpu.Steps, cpu.EvalEvery = ep.RunDir, 2, 0
	if _, err := seededRun(context.Background(), cpu, quiet); err != nil {
		t.Fatalf("a CPU run from the GPU run's checkpoint: %v", err)
	}
}
