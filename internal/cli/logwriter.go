package cli

import (
	"io"
	"sync"
)

// lineWriter takes the proxy's log lines off the requests' path: Write copies the line and hands
// it to a goroutine that writes it to the file at once, several at a time when they queue up (at
// 64 clients a write(2) per request was ~10% of serve's CPU and sat on every reply's clock). No
// line waits on a timer and none is dropped: when the queue is full, Write waits for room. Close
// writes everything still queued.
type lineWriter struct {
	out   io.Writer
	lines chan []byte
	done  chan struct{}
	pool  sync.Pool

	mu     sync.RWMutex // Write holds it shared; Close exclusively, so no Write sends after Close
	closed bool
}

func newLineWriter(out io.Writer) *lineWriter {
	w := &lineWriter{out: out, lines: make(chan []byte, 1024), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return w.out.Write(p) // after Close (a late line at exit): written directly
	}
	b, _ := w.pool.Get().(*[]byte)
	if b == nil {
		b = new([]byte)
	}
	*b = append((*b)[:0], p...)
	w.lines <- *b
	return len(p), nil
}

func (w *lineWriter) run() {
	defer close(w.done)
	batch := make([]byte, 0, 64<<10)
	for line := range w.lines {
		batch = append(batch[:0], line...)
		w.put(line)
	drain:
		for len(batch) < 64<<10 {
			select {
			case more, ok := <-w.lines:
				if !ok {
					break drain
				}
				batch = append(batch, more...)
				w.put(more)
			default:
				break drain
			}
		}
		_, _ = w.out.Write(batch) // nowhere to report a failed log write: the stats still hold the figures
	}
}

func (w *lineWriter) put(b []byte) {
	if cap(b) <= 4<<10 {
		w.pool.Put(&b)
	}
}

// Close writes what is queued and stops the goroutine; later writes go straight to the file.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.lines)
	}
	w.mu.Unlock()
	<-w.done
	return nil
}
