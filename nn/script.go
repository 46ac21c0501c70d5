package nn

import (
	"fmt"
	"sync"

	"protoherb/torch"
)

// Script is a TorchScript module used as a backbone (torchscript:PATH): how a user brings a model
// trained elsewhere, e.g. an ImageNet-pretrained network saved with torch.jit.save. Its parameters
// and buffers keep the module's own names and alias its tensors, so an optimizer trains it and Load
// fills it. Its output is flattened to [N, D].
type Script struct {
	Module  *torch.ScriptModule
	Path    string
	params  []Param
	buffers []Param
	outDim  int
	mu      sync.Mutex // guards train and the module's mode between concurrent Forward calls
	train   int        // last mode set: -1 unknown, 0 eval, 1 train
}

// NewScript loads a TorchScript backbone and measures its output size on one in×size×size input.
func NewScript(path string, dev torch.Device, in, size int) (*Script, error) {
	m, err := torch.LoadScript(path, dev)
	if err != nil {
		return nil, err
	}
	s := &Script{Module: m, Path: path, train: -1}
	names, ts, err := m.NamedParameters()
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: parameters: %w", path, err)
	}
	for i, n := range names {
		s.params = append(s.params, Param{Name: n, T: ts[i]})
	}
	names, ts, err = m.NamedBuffers()
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: buffers: %w", path, err)
	}
	for i, n := range names {
		s.buffers = append(s.buffers, Param{Name: n, T: ts[i]})
	}
	if size <= 0 {
		m.Close()
		return nil, fmt.Errorf("%s: a TorchScript backbone needs the image size (got %d)", path, size)
	}
	var err2 error
	torch.NoGrad(func() {
		sc := torch.NewScope()
		defer sc.Close()
		x := torch.Zeros(sc, torch.Float32, dev, 1, int64(in), int64(size), int64(size))
		y := s.Forward(x, false)
		if err2 = y.Err(); err2 == nil {
			s.outDim = int(y.Numel())
		}
	})
	if err := err2; err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: forward on a 1×%d×%d×%d input: %w", path, in, size, size, err)
	}
	return s, nil
}

// OutDim returns the flattened output size.
func (s *Script) OutDim() int { return s.outDim }

// Forward runs the module (in training or eval mode) and flattens its output to [N, D]. The mode is
// the module's own state: concurrent calls must all use the same mode.
func (s *Script) Forward(x *torch.Tensor, train bool) *torch.Tensor {
	mode := 0
	if train {
		mode = 1
	}
	s.mu.Lock()
	if s.train != mode {
		if err := s.Module.Train(train); err != nil {
			s.mu.Unlock()
			return torch.Errorf("jit_train", "%s: %v", s.Path, err)
		}
		s.train = mode
	}
	s.mu.Unlock()
	y := s.Module.Forward(x)
	if y.Dim() == 2 {
		return y
	}
	return next(y, x, y.Flatten(1, -1))
}

func (s *Script) visit(p string, v visitor) {
	for _, q := range s.params {
		v(p+q.Name, q.T, true)
	}
	for _, q := range s.buffers {
		v(p+q.Name, q.T, false)
	}
}

// Close frees the module.
func (s *Script) Close() {
	for _, q := range s.params {
		q.T.Free()
	}
	for _, q := range s.buffers {
		q.T.Free()
	}
	s.Module.Close()
}

// Parameters lists the module's trainable tensors.
func (s *Script) Parameters() []Param { return collect(s, true, false) }

// Buffers lists the module's buffers.
func (s *Script) Buffers() []Param { return collect(s, false, true) }
