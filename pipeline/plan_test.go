package pipeline

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"protoherb/nn"
	"protoherb/torch"
)

// The backbone comes from the --init file's tensor names; else from the device and the budget.
func TestChooseModel(t *testing.T) {
	dir := t.TempDir()
	x := torch.Zeros(nil, torch.Float32, torch.CPU, 1)
	defer x.Free()
	file := func(name string, names ...string) string {
		p := filepath.Join(dir, name+".safetensors")
		var ps []nn.Param
		for _, n := range names {
			ps = append(ps, nn.Param{Name: n, T: x})
		}
		if err := nn.SaveSafetensors(p, ps, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		cfg       Config
		dev       torch.Device
		backbone  string
		imageSize int
	}{
		{Config{Budget: 15 * time.Minute}, torch.CPU, "conv4", 84},
		{Config{Budget: 3 * time.Hour}, torch.CPU, "resnet12", 84},
		{Config{Budget: 15 * time.Minute}, torch.CUDA(0), "resnet18", 224},
		{Config{Budget: 15 * time.Minute, Init: file("r50", "conv1.weight", "layer4.2.conv3.weight", "fc.weight")}, torch.CPU, "resnet50", 128},
		{Config{Budget: 15 * time.Minute, Init: file("r18", "module.conv1.weight", "module.layer4.1.conv2.weight")}, torch.CUDA(0), "resnet18", 224},
		{Config{Budget: 15 * time.Minute, Init: file("c4", "encoder.0.0.weight")}, torch.CPU, "conv4", 84},
		{Config{Budget: 15 * time.Minute, Backbone: "resnet50", ImageSize: 96}, torch.CPU, "resnet50", 96},
	}
	for i, c := range cases {
		cfg := c.cfg
		if err := chooseModel(&cfg, c.dev); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if cfg.Backbone != c.backbone || cfg.ImageSize != c.imageSize {
			t.Errorf("case %d: %s at %d px, want %s at %d", i, cfg.Backbone, cfg.ImageSize, c.backbone, c.imageSize)
		}
	}
	cfg := Config{Init: file("other", "backbone.stem.weight")}
	if err := chooseModel(&cfg, torch.CPU); err == nil || !strings.Contains(err.Error(), "give --backbone") {
		t.Errorf("unknown names: %v", err)
	}
}

// The calibration's step time is the median after the warm-up steps: one slow batch (a large image)
// does not move the plan.
func TestMedianAfter(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{9, 5, 0.5, 0.4, 3, 0.6}, 0.55},
		{[]float64{9, 5, 0.5, 0.4, 0.6}, 0.5},
		{[]float64{2}, 2},
		{nil, 0},
	} {
		if got := medianAfter(c.xs, 2); got != c.want {
			t.Errorf("medianAfter(%v, 2) = %v, want %v", c.xs, got, c.want)
		}
	}
}
