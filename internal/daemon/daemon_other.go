//go:build !unix

package daemon

import (
	"context"
	"time"
)

// Start is not supported without Unix sessions and signals.
func Start(context.Context, Options) (*Started, error) { return nil, ErrUnsupported }

// Alive is always false where Start cannot run.
func Alive(Handle) bool { return false }

// Stop does nothing where Start cannot run.
func Stop(context.Context, Handle, time.Duration) (StopResult, error) {
	return Unsupported, ErrUnsupported
}
