package search

// #cgo CFLAGS: -O3
// #include <stdint.h>
// #include <stddef.h>
//
// // before: prototype position a ranks before b at equal distance (smaller id, then position).
// static inline int ph_before(const int64_t *ids, int32_t a, int32_t b) {
//   if (!ids) return a < b;
//   return ids[a] < ids[b] || (ids[a] == ids[b] && a < b);
// }
//
// // ph_insert puts (x, p) into the ascending list d/ix of n entries (at most k); returns the count.
// static inline int ph_insert(float *d, int32_t *ix, int n, int k, float x, int32_t p, const int64_t *ids) {
//   int pos = n;
//   if (n == k) {
//     int w = k - 1;
//     if (x > d[w] || (x == d[w] && !ph_before(ids, p, ix[w]))) return n;
//     pos = w;
//   } else {
//     n++;
//   }
//   while (pos > 0 && (x < d[pos - 1] || (x == d[pos - 1] && ph_before(ids, p, ix[pos - 1])))) {
//     d[pos] = d[pos - 1];
//     ix[pos] = ix[pos - 1];
//     pos--;
//   }
//   d[pos] = x;
//   ix[pos] = p;
//   return n;
// }
//
// #define PH_BLOCK 32
//
// // ph_scan merges rows r0..r1-1 of a tile of products with pr columns (query q0+r, prototype
// // p0+j) into the running top-k lists; the score of column j is tile[r][j] + bias[j]. Blocks of
// // PH_BLOCK scores are first tested as a whole against the current k-th best (a branch-free loop
// // the compiler vectorises); only a block holding a candidate is walked one score at a time.
// // One copy of the scan per vector width, picked at load time for the CPU it runs on: the block test
// // then compares 8 or 16 scores per instruction instead of SSE's 4 (twice the scan rate on an AVX-512
// // machine, BenchmarkScan).
// #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// #define PH_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
// #else
// #define PH_CLONES
// #endif
//
// PH_CLONES
// static void ph_scan(const float *tile, const float *bias, int pr, int r0, int r1, int q0, int p0, int k,
//                     float *dist, int32_t *idx, int32_t *cnt, const int64_t *ids) {
//   for (int r = r0; r < r1; r++) {
//     const float *row = tile + (size_t)r * pr;
//     int q = q0 + r;
//     float *d = dist + (size_t)q * k;
//     int32_t *ix = idx + (size_t)q * k;
//     int n = cnt[q];
//     float thr = n == k ? d[k - 1] : __builtin_inff();
//     int j = 0;
//     for (; j + PH_BLOCK <= pr; j += PH_BLOCK) {
//       int any = 0;
//       for (int t = 0; t < PH_BLOCK; t++) any |= row[j + t] + bias[j + t] <= thr;
//       if (!any) continue;
//       for (int t = 0; t < PH_BLOCK; t++) {
//         float x = row[j + t] + bias[j + t];
//         if (x <= thr) { // NaN never passes; ties are settled by id in ph_insert
//           n = ph_insert(d, ix, n, k, x, (int32_t)(p0 + j + t), ids);
//           if (n == k) thr = d[k - 1];
//         }
//       }
//     }
//     for (; j < pr; j++) {
//       float x = row[j] + bias[j];
//       if (x <= thr) {
//         n = ph_insert(d, ix, n, k, x, (int32_t)(p0 + j), ids);
//         if (n == k) thr = d[k - 1];
//       }
//     }
//     cnt[q] = n;
//   }
// }
import "C"

import "unsafe"

// scanRows merges rows r0..r1−1 of a tile with pr columns (query q0+r, prototype p0+j; score =
// product + bias of the prototype) into the running top-k, in C (ph_scan): a loop the compiler
// vectorises tests whole blocks of scores against the current k-th best, ~10× the rate of a Go loop
// over the same tile.
func (s *searcher) scanRows(tile []float32, pr, q0, p0, r0, r1 int) {
	if r1 <= r0 || pr == 0 {
		return
	}
	var ids *C.int64_t
	if !s.f.sorted {
		ids = (*C.int64_t)(unsafe.Pointer(&s.f.ids[0]))
	}
	bias := s.bias[p0 : p0+pr]
	C.ph_scan((*C.float)(unsafe.Pointer(&tile[0])), (*C.float)(unsafe.Pointer(&bias[0])), C.int(pr), C.int(r0), C.int(r1), C.int(q0), C.int(p0), C.int(s.k),
		(*C.float)(unsafe.Pointer(&s.dist[0])), (*C.int32_t)(unsafe.Pointer(&s.idx[0])), (*C.int32_t)(unsafe.Pointer(&s.cnt[0])), ids)
}
