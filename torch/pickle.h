// C ABI for reading files written by PyTorch's torch.save (zip format) through libtorch's own
// unpickler. Same conventions as shim.h: a malloc'd error string (NULL on success), results through
// out-parameters, tensors as opaque handles that Go frees with pt_free.
#ifndef PROTOHERB_TORCH_PICKLE_H
#define PROTOHERB_TORCH_PICKLE_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

// pt_pickle_load unpickles pkl (the archive's data.pkl, already prepared by Go) with the tensor
// records of the zip file at path, onto the CPU, and returns every tensor reachable through dicts
// from the root: *paths holds *n entries separated by '\n', each a key path whose levels are
// separated by '\t' (malloc'd, *paths_len bytes; free with pt_buf_free); *ts the *n handles
// (malloc'd array; free with pt_buf_free after taking the handles).
char* pt_pickle_load(const char* path, const char* pkl, int64_t pkl_len, char** paths, int64_t* paths_len,
                     void*** ts, int64_t* n);

#ifdef __cplusplus
}
#endif
#endif
