package imageio

import (
	"errors"
	"fmt"
)

// Typed errors: test with errors.Is (and errors.As for *TooLargeError).
var (
	// ErrUnsupported: the bytes are not a JPEG or PNG.
	ErrUnsupported = errors.New("unsupported image type (want JPEG or PNG)")
	// ErrCorrupt: a truncated or undecodable file, or one with zero width or height.
	ErrCorrupt = errors.New("corrupt image")
	// ErrTooLarge: the header declares more pixels than allowed (a decompression bomb).
	ErrTooLarge = errors.New("image too large")
)

// TooLargeError is returned (wrapping ErrTooLarge) when the header declares more pixels than allowed;
// it is detected before any pixel is decoded.
type TooLargeError struct {
	W, H, MaxPixels int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("image too large: %dx%d = %d pixels, limit %d", e.W, e.H, e.W*e.H, e.MaxPixels)
}

func (e *TooLargeError) Unwrap() error { return ErrTooLarge }
