package testenv

import (
	"os/exec"
	"testing"
)

// SystemPython is Debian's Python, the one with python3-torch and python3-torchvision (not a pyenv
// python3 that may come first on the PATH).
const SystemPython = "/usr/bin/python3"

// TorchVision returns SystemPython when it imports torch and torchvision, or skips the test with a
// message saying what to install. Tests use it to write reference files; the project never needs
// Python otherwise.
func TorchVision(tb testing.TB) string {
	tb.Helper()
	if out, err := exec.Command(SystemPython, "-c", "import torch, torchvision").CombinedOutput(); err != nil {
		tb.Skipf("%s with torch and torchvision is not available (apt-get install python3-torchvision): "+
			"skipping the comparison with PyTorch (%v: %.200s)", SystemPython, err, out)
	}
	return SystemPython
}
