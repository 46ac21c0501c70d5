package train

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"protoherb/infer"
	"protoherb/torch"
)

// A run on a TorchScript backbone copies the module into its folder and records the copy, so that
// the run folder alone resumes and embeds after the original module is gone.
func TestScriptRunOwnsItsModule(t *testing.T) {
	orig, err := os.ReadFile("../nn/testdata/tiny.pt")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "given.pt")
	if err := os.WriteFile(src, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	data := writeFolder(t, 4, 6, 8, stripes(8))
	cfg := tinyConfig(ModePretrain, data, filepath.Join(t.TempDir(), "run"))
	cfg.Backbone, cfg.ImageSize, cfg.Steps, cfg.SaveEvery, cfg.EvalEvery = "torchscript:"+src, 8, 2, 2, 0
	if _, err := seededRun(context.Background(), cfg, quiet); err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(filepath.Join(cfg.RunDir, ScriptCopy))
	if err != nil || !bytes.Equal(copied, orig) {
		t.Fatalf("run folder's module copy: %v (equal to the given module: %v)", err, bytes.Equal(copied, orig))
	}
	saved, err := ReadConfig(ConfigPath(cfg.RunDir), Defaults(ModePretrain))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Abs(filepath.Join(cfg.RunDir, ScriptCopy))
	if saved.Backbone != "torchscript:"+want {
		t.Errorf("config.yaml backbone = %q, want the run's copy %q", saved.Backbone, "torchscript:"+want)
	}
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	saved.Steps = 4
	res, err := seededRun(context.Background(), saved, Options{Resume: true, Bar: quiet.Bar})
	if err != nil || res.Step != 4 {
		t.Fatalf("resume without the original module: step %d, %v", res.Step, err)
	}
	m, err := infer.LoadModel(cfg.RunDir, infer.ModelSpec{Device: torch.CPU})
	if err != nil {
		t.Fatalf("embed --model RUN without the original module: %v", err)
	}
	m.Close()
}
