package proxy

import (
	"crypto/rand"

	"github.com/copilot-route/copilot-route/internal/copilot"
)

func cutString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

const (
	alnumAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	hexAlphabet   = "0123456789abcdef"
)

// randomString draws n characters from alphabet with crypto/rand, without modulo bias.
func randomString(n int, alphabet string) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 64)
	limit := 256 - 256%len(alphabet)
	for len(out) < n {
		rand.Read(buf) // never fails (Go 1.24+: it crashes the program rather than return an error)
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// NewClientToken makes a client token shaped like an Actions token (ghs_ + 36 characters), the
// shape that makes the Copilot CLI skip its REST look-ups and send everything to COPILOT_API_URL.
func NewClientToken() copilot.Token {
	return copilot.NewToken("ghs_" + randomString(36, alnumAlphabet))
}
