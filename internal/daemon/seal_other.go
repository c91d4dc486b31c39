//go:build !linux

package daemon

// Seal does nothing outside Linux.
func Seal() error { return nil }

// Sealed is false outside Linux.
func Sealed() bool { return false }
