package search

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"protoherb/torch"
)

// searcher holds one Search call's running top-k: for query q, slots q·k … q·k+cnt[q]−1 of dist
// (ranking scores, ascending) and idx (prototype positions).
type searcher struct {
	f    *Flat
	opt  Options
	k    int
	nq   int
	dist []float32
	idx  []int32
	cnt  []int32
	bias []float32 // per prototype, added to the products by the scan: |p|² (L2) or 1 (cosine)
}

// tileViews are the libtorch views one search reuses: they are created once, not per tile.
type tileViews struct {
	scope  *torch.Scope
	protos []*torch.Tensor // prototype tile i: [rows, dim], a view of the index's tensor (no scope): freed at close
	pStart []int
	qbuf   *torch.Tensor // [qt, dim]
	qdata  []float32     // qbuf's memory
	qview  map[int]*torch.Tensor
	obuf   []*torch.Tensor // flat [qt·pt] tile buffers
	oview  map[[3]int]*torch.Tensor
}

func (v *tileViews) close() {
	for _, t := range v.protos {
		t.Free()
	}
	v.scope.Close()
}

// query returns the first rows of the query buffer as a [rows, dim] tensor.
func (v *tileViews) query(rows int) *torch.Tensor {
	if t, ok := v.qview[rows]; ok {
		return t
	}
	t := v.qbuf.Narrow(0, 0, int64(rows))
	v.qview[rows] = t
	return t
}

// out returns buffer b as a contiguous [rows, cols] tensor.
func (v *tileViews) out(b, rows, cols int) *torch.Tensor {
	key := [3]int{b, rows, cols}
	if t, ok := v.oview[key]; ok {
		return t
	}
	t := v.obuf[b].Narrow(0, 0, int64(rows*cols)).Reshape(int64(rows), int64(cols))
	v.oview[key] = t
	return t
}

func (s *searcher) views(protos *torch.Tensor, nbuf int) (*tileViews, error) {
	f := s.f
	n := len(f.ids)
	qt := min(s.opt.QueryTile, s.nq)
	pt := min(s.opt.ProtoTile, n)
	v := &tileViews{scope: torch.NewScope(), qview: map[int]*torch.Tensor{}, oview: map[[3]int]*torch.Tensor{}}
	for p0 := 0; p0 < n; p0 += pt {
		rows := int64(min(pt, n-p0))
		nar := protos.Narrow(0, int64(p0), rows)
		v.protos = append(v.protos, nar)
		v.pStart = append(v.pStart, p0)
	}
	v.qbuf = torch.Zeros(v.scope, torch.Float32, torch.CPU, int64(qt), int64(f.dim))
	for range nbuf {
		v.obuf = append(v.obuf, torch.Zeros(v.scope, torch.Float32, torch.CPU, int64(qt*pt)))
	}
	for _, t := range slices.Concat(v.protos, []*torch.Tensor{v.qbuf}, v.obuf) {
		if err := t.Err(); err != nil {
			v.close()
			return nil, fmt.Errorf("search: allocate tiles: %w", err)
		}
	}
	var err error
	if v.qdata, err = v.qbuf.Float32View(); err != nil {
		v.close()
		return nil, fmt.Errorf("search: query tile: %w", err)
	}
	return v, nil
}

func (s *searcher) run(ctx context.Context, queries []float32, protos *torch.Tensor) error {
	nbuf := 1
	if s.opt.Pipeline {
		nbuf = 2
	}
	v, err := s.views(protos, nbuf)
	if err != nil {
		return err
	}
	defer v.close()
	dim := s.f.dim
	qt := min(s.opt.QueryTile, s.nq)
	alpha := -2.0
	if s.f.metric == Cosine {
		alpha = -1
	}
	var scanning sync.WaitGroup // the pipelined scan in flight
	defer scanning.Wait()
	t := 0
	for q0 := 0; q0 < s.nq; q0 += qt {
		qr := min(qt, s.nq-q0)
		// Scans in flight read only tile buffers, never the query tile, so it can be refilled now.
		copy(v.qdata, queries[q0*dim:(q0+qr)*dim])
		if s.f.metric == Cosine {
			normalizeRows(v.qdata[:qr*dim], dim)
		}
		m1 := v.query(qr)
		for i, pt := range v.protos {
			if err := ctx.Err(); err != nil {
				return err
			}
			pr := int(pt.Size(0))
			b := t % nbuf
			out := v.out(b, qr, pr)
			t0 := time.Now()
			// The product alone, written without reading the buffer (the bias is added by the
			// scan instead of a copy of the bias row into the 64 MB tile first).
			if err := torch.GemmNT(out, m1, pt, alpha); err != nil {
				return fmt.Errorf("search: tile product: %w", err)
			}
			data, err := out.Float32View()
			if err != nil {
				return fmt.Errorf("search: tile product: %w", err)
			}
			p0 := v.pStart[i]
			t1 := time.Now()
			if s.opt.Pipeline {
				scanning.Wait()
				scanning.Add(1)
				go func() {
					defer scanning.Done()
					s.scanTile(data, qr, pr, q0, p0)
				}()
			} else {
				s.scanTile(data, qr, pr, q0, p0)
			}
			if st := s.opt.Stats; st != nil {
				st.Product += t1.Sub(t0)
				st.Scan += time.Since(t1)
				st.Tiles++
			}
			t++
		}
	}
	return nil
}

// scanTile merges a [qr, pr] tile of scores into the running top-k, splitting rows over goroutines.
func (s *searcher) scanTile(tile []float32, qr, pr, q0, p0 int) {
	w := min(s.opt.Threads, qr)
	if w <= 1 {
		s.scanRows(tile, pr, q0, p0, 0, qr)
		return
	}
	var wg sync.WaitGroup
	for g := range w {
		r0, r1 := g*qr/w, (g+1)*qr/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.scanRows(tile, pr, q0, p0, r0, r1)
		}()
	}
	wg.Wait()
}

// finish turns positions into ids and scores into reported distances.
func (s *searcher) finish(queries []float32, ids []int64) {
	dim, k := s.f.dim, s.k
	for q := range s.nq {
		var q2 float32
		if s.f.metric == L2 {
			for _, v := range queries[q*dim : (q+1)*dim] {
				q2 += v * v
			}
		}
		for i := range int(s.cnt[q]) {
			j := q*k + i
			ids[j] = s.f.ids[s.idx[j]]
			dd := s.dist[j] + q2
			if dd < 0 {
				dd = 0
			}
			s.dist[j] = dd
		}
	}
}
