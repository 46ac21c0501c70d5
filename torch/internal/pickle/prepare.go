// Package pickle prepares the pickle of a torch.save file (its data.pkl) for libtorch's own
// unpickler, which reads a subset of what Python's pickler writes: it rewrites the few constructs
// that subset lacks into equivalent ones it has, and passes everything else through unchanged.
//
// libtorch's unpickler (torch/csrc/jit/serialization/unpickler.cpp, 1.13) misreads or refuses
// three things a state dict is made of:
//
//   - collections.OrderedDict(), the type of every state dict, becomes None (the unpickler meets it
//     only as a tensor's empty backward hooks), so the SETITEMS that follow fail. Python's pickler
//     (protocol 2, torch.save's) writes it as GLOBAL 'collections OrderedDict' [BINPUT m] (or
//     BINGET m once memoised), EMPTY_TUPLE, REDUCE. The rewrite drops the class and its memo
//     entries and turns EMPTY_TUPLE REDUCE into EMPTY_TUPLE NEWOBJ EMPTY_DICT: libtorch's NEWOBJ
//     only pops the tuple, so an empty dict is left.
//   - The OrderedDict's state ({'_metadata': ...}) is applied with BUILD, which libtorch treats as
//     a call of a global: on a dict it becomes NEWOBJ, which drops the state.
//   - A one-item dict or list is filled with SETITEM or APPEND, which libtorch 1.13 lacks: a MARK
//     goes before the item and the opcode becomes SETITEMS or APPENDS.
//
// To know what each opcode applies to, the rewrite follows a symbolic stack of the pickle (a tag
// and the output offset where each value's opcodes begin). Any other use of OrderedDict is an
// error rather than a silent misreading.
package pickle

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Prepare returns p rewritten for libtorch's unpickler.
func Prepare(p []byte) ([]byte, error) {
	w := &rewriter{in: p, memo: map[uint32]tag{}}
	if err := w.run(); err != nil {
		return nil, err
	}
	return w.out, nil
}

// tag is what the rewrite knows of a value.
type tag uint8

const (
	tagOther      tag = iota
	tagODictClass     // collections.OrderedDict itself (absent from the real stack)
	tagODict          // an OrderedDict instance, now a dict
	tagEmptyTuple
)

// slot is a value on the symbolic stack: its tag and the output offset where its opcodes begin.
type slot struct {
	tag   tag
	start int
}

// mark is an open MARK: the stack height and the output offset where it is.
type mark struct{ height, start int }

type rewriter struct {
	in    []byte
	pos   int
	out   []byte
	stack []slot
	marks []mark
	memo  map[uint32]tag
}

// Opcodes of pickle protocols 0–3 (Python's Lib/pickle.py).
const (
	opMark, opStop, opPop, opPopMark, opDup                = '(', '.', '0', '1', '2'
	opFloat, opInt, opBinInt, opBinInt1, opLong, opBinInt2 = 'F', 'I', 'J', 'K', 'L', 'M'
	opNone, opPersID, opBinPersID, opReduce                = 'N', 'P', 'Q', 'R'
	opString, opBinString, opShortBinString                = 'S', 'T', 'U'
	opUnicode, opBinUnicode, opAppend, opBuild, opGlobal   = 'V', 'X', 'a', 'b', 'c'
	opDict, opEmptyDict, opAppends, opGet, opBinGet        = 'd', '}', 'e', 'g', 'h'
	opInst, opLongBinGet, opList, opEmptyList, opObj       = 'i', 'j', 'l', ']', 'o'
	opPut, opBinPut, opLongBinPut, opSetItem, opTuple      = 'p', 'q', 'r', 's', 't'
	opEmptyTuple, opSetItems, opBinFloat                   = ')', 'u', 'G'
	opBinBytes, opShortBinBytes                            = 'B', 'C'
	opProto, opNewObj, opExt1, opExt2, opExt4              = 0x80, 0x81, 0x82, 0x83, 0x84
	opTuple1, opTuple2, opTuple3, opNewTrue, opNewFalse    = 0x85, 0x86, 0x87, 0x88, 0x89
	opLong1, opLong4                                       = 0x8a, 0x8b
)

var errODict = errors.New("collections.OrderedDict used other than as OrderedDict(): not supported")

func (w *rewriter) run() error {
	for w.pos < len(w.in) {
		start := w.pos
		op := w.in[w.pos]
		w.pos++
		arg, err := w.arg(op)
		if err == nil {
			err = w.apply(op, arg, w.in[start:w.pos])
		}
		if err != nil {
			return fmt.Errorf("byte %d: opcode 0x%02x: %w", start, op, err)
		}
		if op == opStop {
			return nil
		}
	}
	return errors.New("truncated: no STOP opcode")
}

// arg consumes op's argument: the text of a newline-terminated one (module.name for GLOBAL), the
// raw bytes of a fixed-size one, the payload of a counted one.
func (w *rewriter) arg(op byte) ([]byte, error) {
	switch op {
	case opFloat, opInt, opLong, opPersID, opString, opUnicode, opGet, opPut:
		return w.line()
	case opGlobal, opInst:
		a, err := w.line()
		if err != nil {
			return nil, err
		}
		b, err := w.line()
		return append(append(append([]byte{}, a...), '.'), b...), err
	case opBinInt1, opBinGet, opBinPut, opProto, opExt1:
		return w.fixed(1)
	case opBinInt2, opExt2:
		return w.fixed(2)
	case opBinInt, opLongBinGet, opLongBinPut, opExt4:
		return w.fixed(4)
	case opBinFloat:
		return w.fixed(8)
	case opBinString, opBinUnicode, opBinBytes, opLong4:
		return w.counted(4)
	case opShortBinString, opShortBinBytes, opLong1:
		return w.counted(1)
	case opMark, opStop, opPop, opPopMark, opDup, opNone, opBinPersID, opReduce, opAppend, opBuild, opDict,
		opEmptyDict, opAppends, opList, opEmptyList, opObj, opSetItem, opTuple, opEmptyTuple, opSetItems,
		opNewObj, opTuple1, opTuple2, opTuple3, opNewTrue, opNewFalse:
		return nil, nil
	}
	return nil, errors.New("not an opcode of pickle protocols 0–3 (torch.save writes protocol 2)")
}

func (w *rewriter) fixed(n int) ([]byte, error) {
	if n > len(w.in)-w.pos {
		return nil, errors.New("truncated argument")
	}
	a := w.in[w.pos : w.pos+n]
	w.pos += n
	return a, nil
}

func (w *rewriter) line() ([]byte, error) {
	i := bytes.IndexByte(w.in[w.pos:], '\n')
	if i < 0 {
		return nil, errors.New("unterminated argument")
	}
	a := w.in[w.pos : w.pos+i]
	w.pos += i + 1
	return a, nil
}

func (w *rewriter) counted(size int) ([]byte, error) {
	a, err := w.fixed(size)
	if err != nil {
		return nil, err
	}
	var n uint64
	for i := size - 1; i >= 0; i-- {
		n = n<<8 | uint64(a[i])
	}
	if n > uint64(len(w.in)-w.pos) {
		return nil, fmt.Errorf("length %d past the end", n)
	}
	return w.fixed(int(n))
}

func memoIndex(op byte, arg []byte) (uint32, error) {
	switch op {
	case opBinGet, opBinPut:
		return uint32(arg[0]), nil
	case opLongBinGet, opLongBinPut:
		return binary.LittleEndian.Uint32(arg), nil
	}
	n, err := strconv.ParseUint(string(arg), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("memo index %q: %v", arg, err)
	}
	return uint32(n), nil
}

// pop removes n values; none may be the OrderedDict class. It returns the first one removed
// (the deepest), whose start is where the popped values' opcodes begin.
func (w *rewriter) pop(n int) (slot, error) {
	if len(w.stack) < n {
		return slot{}, errors.New("stack underflow")
	}
	first := slot{start: len(w.out)}
	if n > 0 {
		first = w.stack[len(w.stack)-n]
	}
	for _, s := range w.stack[len(w.stack)-n:] {
		if s.tag == tagODictClass {
			return slot{}, errODict
		}
	}
	w.stack = w.stack[:len(w.stack)-n]
	return first, nil
}

// popMark removes the values above the last MARK, and returns where the MARK is in the output.
func (w *rewriter) popMark() (slot, error) {
	if len(w.marks) == 0 {
		return slot{}, errors.New("no MARK")
	}
	m := w.marks[len(w.marks)-1]
	w.marks = w.marks[:len(w.marks)-1]
	if m.height > len(w.stack) {
		return slot{}, errors.New("MARK above the stack")
	}
	_, err := w.pop(len(w.stack) - m.height)
	return slot{start: m.start}, err
}

func (w *rewriter) top() (*slot, error) {
	if len(w.stack) == 0 {
		return nil, errors.New("stack underflow")
	}
	return &w.stack[len(w.stack)-1], nil
}

// insertMark puts a MARK opcode at output offset at (the start of the values it marks).
func (w *rewriter) insertMark(at int) {
	w.out = append(w.out, 0)
	copy(w.out[at+1:], w.out[at:])
	w.out[at] = opMark
}

// apply follows op on the symbolic stack and writes its replacement.
func (w *rewriter) apply(op byte, arg, raw []byte) error {
	here := len(w.out)
	switch op {
	case opGlobal:
		if string(arg) == "collections.OrderedDict" {
			w.stack = append(w.stack, slot{tagODictClass, here})
			return nil
		}
	case opPut, opBinPut, opLongBinPut:
		t, err := w.top()
		if err != nil {
			return err
		}
		i, err := memoIndex(op, arg)
		if err != nil {
			return err
		}
		w.memo[i] = t.tag
		if t.tag == tagODictClass {
			return nil
		}
		w.out = append(w.out, raw...)
		return nil
	case opGet, opBinGet, opLongBinGet:
		i, err := memoIndex(op, arg)
		if err != nil {
			return err
		}
		w.stack = append(w.stack, slot{w.memo[i], here})
		if w.memo[i] == tagODictClass {
			return nil
		}
		w.out = append(w.out, raw...)
		return nil
	case opReduce:
		return w.reduce(raw)
	case opBuild:
		if _, err := w.pop(1); err != nil {
			return err
		}
		t, err := w.top()
		if err != nil {
			return err
		}
		if t.tag == tagODict {
			w.out = append(w.out, opNewObj)
			return nil
		}
		w.out = append(w.out, raw...)
		return nil
	case opSetItem, opAppend:
		n := 2
		if op == opAppend {
			n = 1
		}
		first, err := w.pop(n)
		if err != nil {
			return err
		}
		w.insertMark(first.start)
		w.out = append(w.out, map[byte]byte{opSetItem: opSetItems, opAppend: opAppends}[op])
		return nil
	}
	if err := w.generic(op, here); err != nil {
		return err
	}
	w.out = append(w.out, raw...)
	return nil
}

// reduce follows REDUCE: OrderedDict() becomes an empty dict, any other call passes through.
func (w *rewriter) reduce(raw []byte) error {
	if len(w.stack) < 2 {
		return errors.New("stack underflow")
	}
	fn, args := w.stack[len(w.stack)-2], w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-2]
	if args.tag == tagODictClass {
		return errODict
	}
	if fn.tag == tagODictClass {
		if args.tag != tagEmptyTuple {
			return errors.New("OrderedDict built from arguments: not supported")
		}
		w.out = append(w.out, opNewObj, opEmptyDict)
		w.stack = append(w.stack, slot{tagODict, fn.start})
		return nil
	}
	w.out = append(w.out, raw...)
	w.stack = append(w.stack, slot{tagOther, fn.start})
	return nil
}

// generic follows the opcodes the rewrite passes through untouched.
func (w *rewriter) generic(op byte, here int) error {
	push := func(s slot, err error) error {
		if err == nil {
			w.stack = append(w.stack, slot{tagOther, s.start})
		}
		return err
	}
	switch op {
	case opMark:
		w.marks = append(w.marks, mark{len(w.stack), here})
	case opProto, opStop:
	case opEmptyTuple:
		w.stack = append(w.stack, slot{tagEmptyTuple, here})
	case opPop:
		_, err := w.pop(1)
		return err
	case opBinPersID, opTuple1:
		return push(w.pop(1))
	case opTuple2, opNewObj:
		return push(w.pop(2))
	case opTuple3:
		return push(w.pop(3))
	case opPopMark, opAppends, opSetItems:
		_, err := w.popMark()
		return err
	case opTuple, opList, opDict, opInst, opObj:
		return push(w.popMark())
	case opDup:
		t, err := w.top()
		if err != nil {
			return err
		}
		if t.tag == tagODictClass {
			return errODict
		}
		w.stack = append(w.stack, slot{t.tag, here})
	default: // every other opcode pushes one value
		w.stack = append(w.stack, slot{tagOther, here})
	}
	return nil
}
