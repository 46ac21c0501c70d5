package torch

import (
	"slices"
	"testing"
)

// TestFromFloat32On checks that a tensor made straight on a device holds the values, on the CPU
// and, where there is one, on the GPU (one host-to-device copy).
func TestFromFloat32On(t *testing.T) {
	devs := []Device{CPU}
	if CUDAAvailable() {
		devs = append(devs, CUDA(0))
	}
	want := []float32{1, -2, 3.5, 4, 5, 6}
	for _, d := range devs {
		s := NewScope()
		x := FromFloat32On(s, d, want, 2, 3)
		if x.Device() != d || !slices.Equal(x.Shape(), []int64{2, 3}) {
			t.Errorf("%v: device %v, shape %v", d, x.Device(), x.Shape())
		}
		got, err := x.ToDevice(CPU).Float32s()
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%v: %v, %v", d, got, err)
		}
		if FromFloat32On(s, d, want, 4, 2).Err() == nil {
			t.Errorf("%v: 6 values for shape [4 2]: no error", d)
		}
		s.Close()
	}
}
