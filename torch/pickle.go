package torch

/*
#include <stdlib.h>
#include "shim.h"
#include "pickle.h"
*/
import "C"

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"unsafe"

	"protoherb/torch/internal/pickle"
)

// PickledTensor is one tensor of a torch.save file, with the dict keys that lead to it from the
// file's root (["conv1.weight"] for a state dict, ["state_dict", "conv1.weight"] for one wrapped in
// a checkpoint dict).
type PickledTensor struct {
	Keys []string
	T    *Tensor // on the CPU, owned by the caller
}

// maxPickle bounds a file's data.pkl (names and metadata only: the tensors are separate records).
const maxPickle = 256 << 20

// LoadPickle reads every tensor that dicts lead to from a file written by PyTorch's torch.save in its
// zip format (the default since PyTorch 1.6: .pt, .pth), with libtorch's own unpickler and zip
// reader. Tensors come onto the CPU whatever device they were saved from. Other values (numbers,
// lists, optimizer states, unknown Python objects) are skipped.
//
// The file's pickle is prepared first (package torch/internal/pickle): libtorch's unpickler reads a
// collections.OrderedDict, the type of every state dict, as None.
func LoadPickle(file string) ([]PickledTensor, error) {
	pkl, err := readDataPkl(file)
	if err != nil {
		return nil, err
	}
	if pkl, err = pickle.Prepare(pkl); err != nil {
		return nil, fmt.Errorf("%s: data.pkl: %w", file, err)
	}
	cp := C.CString(file)
	defer C.free(unsafe.Pointer(cp))
	var paths *C.char
	var plen, n C.int64_t
	var hs *unsafe.Pointer
	if err := cerr("pickle_load", C.pt_pickle_load(cp, (*C.char)(unsafe.Pointer(&pkl[0])), C.int64_t(len(pkl)),
		&paths, &plen, &hs, &n)); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	defer C.pt_buf_free(paths)
	defer C.pt_buf_free((*C.char)(unsafe.Pointer(hs)))
	if n == 0 {
		return nil, nil
	}
	names := strings.Split(C.GoStringN(paths, C.int(plen)), "\n")
	handles := unsafe.Slice(hs, int(n))
	out := make([]PickledTensor, int(n))
	for i := range out {
		out[i] = PickledTensor{Keys: strings.Split(names[i], "\t"), T: newTensor(C.pt_tensor(handles[i]), nil)}
	}
	return out, nil
}

// readDataPkl returns the pickle of a torch.save zip file (the record <archive>/data.pkl).
func readDataPkl(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err == nil && magic[0] == 0x80 {
		return nil, fmt.Errorf("%s: a torch.save file in the legacy format (before PyTorch 1.6, or _use_new_zipfile_serialization=False); "+
			"re-save it: python3 -c \"import torch,sys; torch.save(torch.load(sys.argv[1], map_location='cpu'), sys.argv[2])\" IN OUT", file)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	zr, err := zip.NewReader(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: not a torch.save file (zip format): %w", file, err)
	}
	for _, e := range zr.File {
		if path.Base(e.Name) != "data.pkl" || strings.Count(e.Name, "/") != 1 {
			continue
		}
		if e.UncompressedSize64 > maxPickle {
			return nil, fmt.Errorf("%s: %s is %d bytes, over the %d-byte limit", file, e.Name, e.UncompressedSize64, maxPickle)
		}
		r, err := e.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, e.Name, err)
		}
		defer r.Close()
		var b bytes.Buffer
		if _, err := io.Copy(&b, io.LimitReader(r, maxPickle)); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, e.Name, err)
		}
		if b.Len() == 0 {
			return nil, fmt.Errorf("%s: %s is empty", file, e.Name)
		}
		return b.Bytes(), nil
	}
	return nil, fmt.Errorf("%s: a zip file without <archive>/data.pkl: not written by torch.save", file)
}
