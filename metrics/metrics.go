// Package metrics records a run's training metrics as JSON Lines (metrics.jsonl) and reads them back.
//
// Each line is one flat JSON object: "step" (integer), "phase" (for example "train" or "val"), "time"
// (RFC 3339 with nanoseconds) and any number of named numeric values:
//
//	{"step":120,"phase":"train","time":"2026-01-02T15:04:05.123Z","loss":0.53,"acc":0.87,"lr":0.001,"images_per_s":540}
//	{"step":500,"phase":"val","time":"2026-01-02T15:09:00Z","acc":0.97,"acc_ci95":0.004}
//
// Values that JSON cannot hold are written as the strings "NaN", "+Inf" and "-Inf" and read back as
// numbers, so a diverging loss is still logged. Other non-numeric fields are ignored on reading.
//
// The file is append-only. A Writer opened on an existing file first cuts off a torn last line (one a
// crash left without its newline), so appends after a crash stay parseable; Rewind drops the records
// after a step, for a run resumed from an earlier checkpoint.
package metrics

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"protoherb/atomicfile"
)

// Record is one line of metrics.jsonl.
type Record struct {
	Step   int64
	Phase  string
	Time   time.Time // zero: the writer fills in the current time
	Values map[string]float64
}

// reserved keys are not values.
func reserved(k string) bool { return k == "step" || k == "phase" || k == "time" }

// Get returns the named value and whether the record has it.
func (r Record) Get(name string) (float64, bool) {
	v, ok := r.Values[name]
	return v, ok
}

// MarshalJSON writes the flat object: step, phase, time, then the values sorted by name.
func (r Record) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"step":`)
	b.WriteString(strconv.FormatInt(r.Step, 10))
	b.WriteString(`,"phase":`)
	p, _ := json.Marshal(r.Phase)
	b.Write(p)
	if !r.Time.IsZero() {
		b.WriteString(`,"time":"`)
		b.WriteString(r.Time.UTC().Format(time.RFC3339Nano))
		b.WriteByte('"')
	}
	keys := make([]string, 0, len(r.Values))
	for k := range r.Values {
		if reserved(k) {
			return nil, fmt.Errorf("metrics: value name %q is reserved", k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteByte(',')
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		v := r.Values[k]
		switch {
		case math.IsNaN(v):
			b.WriteString(`"NaN"`)
		case math.IsInf(v, 1):
			b.WriteString(`"+Inf"`)
		case math.IsInf(v, -1):
			b.WriteString(`"-Inf"`)
		default:
			b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads one flat object; see the package documentation.
func (r *Record) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*r = Record{Values: map[string]float64{}}
	for k, v := range raw {
		switch k {
		case "step":
			if err := json.Unmarshal(v, &r.Step); err != nil {
				return fmt.Errorf("step: %s is not an integer", v)
			}
		case "phase":
			if err := json.Unmarshal(v, &r.Phase); err != nil {
				return fmt.Errorf("phase: %s is not a string", v)
			}
		case "time":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("time: %s is not a string", v)
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return fmt.Errorf("time: %w", err)
			}
			r.Time = t
		default:
			var f float64
			if json.Unmarshal(v, &f) == nil {
				r.Values[k] = f
				continue
			}
			var s string
			if json.Unmarshal(v, &s) == nil {
				switch s {
				case "NaN":
					r.Values[k] = math.NaN()
				case "+Inf", "Inf":
					r.Values[k] = math.Inf(1)
				case "-Inf":
					r.Values[k] = math.Inf(-1)
				}
			}
		}
	}
	if _, ok := raw["step"]; !ok {
		return errors.New(`no "step"`)
	}
	return nil
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// FlushEvery is how often buffered lines reach the disk. Zero writes and fsyncs every line; a
	// positive interval buffers lines and flushes (and fsyncs) on the first write after the interval
	// has passed, and on Flush and Close.
	FlushEvery time.Duration
	// Now stamps records whose Time is zero; nil means time.Now.
	Now func() time.Time
}

// Writer appends records to a metrics.jsonl file. It is safe for concurrent use.
type Writer struct {
	mu        sync.Mutex
	path      string
	f         *os.File
	bw        *bufio.Writer
	opt       WriterOptions
	lastFlush time.Time
	err       error // first write error; later calls return it
}

// Open opens path for appending, creating it if needed. A torn last line (no trailing newline) left
// by a crash is cut off first.
func Open(path string, opt WriterOptions) (*Writer, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	end, err := completeLength(f)
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil && st.Size() != end {
			err = f.Truncate(end)
		}
	}
	if err == nil {
		_, err = f.Seek(end, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("metrics: %s: %w", path, err)
	}
	return &Writer{path: path, f: f, bw: bufio.NewWriter(f), opt: opt, lastFlush: opt.Now()}, nil
}

// completeLength returns the length of f up to and including its last newline.
func completeLength(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := st.Size()
	buf := make([]byte, 4096)
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
}

// Write appends one record (stamping its time if zero).
func (w *Writer) Write(r Record) error {
	if r.Time.IsZero() {
		r.Time = w.opt.Now()
	}
	line, err := r.MarshalJSON()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if _, err := w.bw.Write(append(line, '\n')); err != nil {
		w.err = fmt.Errorf("metrics: write %s: %w", w.path, err)
		return w.err
	}
	if w.opt.FlushEvery <= 0 || w.opt.Now().Sub(w.lastFlush) >= w.opt.FlushEvery {
		return w.flushLocked()
	}
	return nil
}

// Flush writes buffered lines and fsyncs the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	err := w.bw.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if err != nil {
		w.err = fmt.Errorf("metrics: write %s: %w", w.path, err)
		return w.err
	}
	w.lastFlush = w.opt.Now()
	return nil
}

// Close flushes and closes the file.
func (w *Writer) Close() error {
	err := w.Flush()
	w.mu.Lock()
	defer w.mu.Unlock()
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("metrics: close %s: %w", w.path, cerr)
	}
	if w.err == nil {
		w.err = fmt.Errorf("metrics: %s is closed", w.path)
	}
	return err
}

// Read parses JSON Lines from r; name is used in error messages. Blank lines are skipped; a torn last
// line without a newline is ignored; any other bad line is an error naming its line number.
func Read(r io.Reader, name string) ([]Record, error) {
	br := bufio.NewReader(r)
	var out []Record
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		torn := err == io.EOF
		if t := bytes.TrimSpace(line); len(t) > 0 {
			var rec Record
			if perr := json.Unmarshal(t, &rec); perr != nil {
				if torn {
					break // a crash cut the last line short
				}
				return nil, fmt.Errorf("%s:%d: %v", name, lineNo, perr)
			}
			out = append(out, rec)
		}
		if torn {
			break
		}
	}
	return out, nil
}

// ReadFile reads a metrics.jsonl file.
func ReadFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	return Read(f, path)
}

// Rewind atomically rewrites path keeping only the records with Step <= step, for a run resumed from
// the checkpoint at that step. A missing file is not an error.
func Rewind(path string, step int64) error {
	recs, err := ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		for _, r := range recs {
			if r.Step > step {
				continue
			}
			line, err := r.MarshalJSON()
			if err != nil {
				return err
			}
			if _, err := w.Write(append(line, '\n')); err != nil {
				return err
			}
		}
		return nil
	})
}
