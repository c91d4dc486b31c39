package cli

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Every line written from many goroutines reaches the file whole, once, and Close leaves nothing
// queued; a line written after Close still reaches it.
func TestLineWriterKeepsEveryLine(t *testing.T) {
	t.Parallel()
	var out lockedBuf
	w := newLineWriter(&out)
	const writers, each = 16, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				line := fmt.Sprintf("{\"g\":%d,\"i\":%d,\"pad\":%q}\n", g, i, strings.Repeat("x", i%300))
				if n, err := w.Write([]byte(line)); n != len(line) || err != nil {
					t.Errorf("Write = %d, %v", n, err)
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("{\"after\":\"close\"}\n"))
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if seen[l] {
			t.Fatalf("line written twice: %s", l)
		}
		seen[l] = true
	}
	if len(seen) != writers*each+1 || !seen["{\"after\":\"close\"}"] {
		t.Fatalf("%d lines in the file, want %d", len(seen), writers*each+1)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
