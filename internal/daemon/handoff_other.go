//go:build !unix

package daemon

import (
	"os"
	"time"
)

// HandoffPipe is not supported without Unix descriptor inheritance.
func HandoffPipe([]byte) (*os.File, error) { return nil, ErrUnsupported }

// ReadHandoff is not supported without Unix descriptor inheritance.
func ReadHandoff(int, int64, time.Duration) ([]byte, error) { return nil, ErrUnsupported }
