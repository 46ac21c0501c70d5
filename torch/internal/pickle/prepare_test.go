package pickle

import (
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The inputs are what Python 3's pickle.dumps(..., protocol=2) writes (torch.save's protocol).
func TestPrepare(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{
			// {'a': 1}: SETITEM becomes MARK ... SETITEMS (Python's pickle reads both as {'a': 1}).
			"one-item dict",
			"8002 7d7100 580100000061 7101 4b01 73 2e",
			"8002 7d7100 28 580100000061 7101 4b01 75 2e",
		},
		{
			// [7]: APPEND becomes MARK ... APPENDS.
			"one-item list", "8002 5d7100 4b07 61 2e", "8002 5d7100 28 4b07 65 2e",
		},
		{
			// o = OrderedDict(w=1, b=2); o._metadata = OrderedDict([('', {'version': 1})]): the class
			// and its memo entries (q\x00, h\x00) go, OrderedDict() becomes () NEWOBJ {}, the nested
			// SETITEMs become SETITEMS, the BUILD on the dict becomes NEWOBJ.
			"state dict with _metadata",
			"8002 63636f6c6c656374696f6e730a4f726465726564446963740a 7100 29 52 7101" +
				" 28 5801000000 77 7102 4b01 5801000000 62 7103 4b02 75" +
				" 7d 7104 5809000000 5f6d65746164617461 7105 6800 29 52 7106" +
				" 5800000000 7107 7d 7108 5807000000 76657273696f6e 7109 4b01 73 73 73 62 2e",
			"8002 29 81 7d 7101" +
				" 28 5801000000 77 7102 4b01 5801000000 62 7103 4b02 75" +
				" 7d 7104 28 5809000000 5f6d65746164617461 7105 29 81 7d 7106" +
				" 28 5800000000 7107 7d 7108 28 5807000000 76657273696f6e 7109 4b01 75 75 75 81 2e",
		},
	}
	for _, c := range cases {
		got, err := Prepare(unhex(t, c.in))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if want := unhex(t, c.want); string(got) != string(want) {
			t.Errorf("%s:\n got %x\nwant %x", c.name, got, want)
		}
	}
}

func TestPrepareRejects(t *testing.T) {
	odict := "63636f6c6c656374696f6e730a4f726465726564446963740a"
	cases := []struct{ name, in, want string }{
		{"no STOP", "8002 7d7100", "no STOP"},
		{"truncated string", "8002 58ff000000 6162", "past the end"},
		{"protocol 4 FRAME", "8004 95 0800000000000000 2e", "not an opcode"},
		{"OrderedDict from a list", "8002 " + odict + " 5d 52 2e", "built from arguments"},
		{"OrderedDict duplicated", "8002 " + odict + " 32 2e", "not supported"},
		{"OrderedDict in a tuple", "8002 " + odict + " 85 2e", "not supported"},
		{"stack underflow", "8002 52 2e", "underflow"},
		{"SETITEMS without MARK", "8002 7d 75 2e", "no MARK"},
	}
	for _, c := range cases {
		_, err := Prepare(unhex(t, c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
