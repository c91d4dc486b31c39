package allowlist

import (
	"strings"
	"testing"
)

// FuzzDomain: Domain never panics; what it accepts is a bare lower-case name (or "*." and one),
// safe in every output format (no separator, quote, shell or YAML syntax), not an IP address,
// not a public suffix, and accepted again unchanged (normalisation is idempotent).
func FuzzDomain(f *testing.F) {
	for _, s := range []string{"example.com", "*.example.com", "https://API.example.com:8443/x", "example.com:443",
		"localhost", "10.0.0.1", "[::1]:443", "*.com", "co.uk", "ghe.com", "acme.ghe.com.", "exa mple.com", "a;b",
		"\"x\"", "a\nb", "*", ".example.com", "xn--bcher-kva.example", "-a.com", "a..b", "http://u@x.com", "1.2.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		d, err := Domain(raw)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("Domain(%q): multi-line error", raw)
			}
			return
		}
		base := strings.TrimPrefix(d, "*.")
		if base == "" || len(d) > 255 || d != strings.ToLower(d) {
			t.Fatalf("Domain(%q) = %q", raw, d)
		}
		for _, c := range []byte(base) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				t.Fatalf("Domain(%q) = %q holds %q", raw, d, c)
			}
		}
		if strings.Contains(base, "..") || strings.HasPrefix(base, ".") || strings.HasSuffix(base, ".") {
			t.Fatalf("Domain(%q) = %q has an empty label", raw, d)
		}
		if !strings.Contains(base, ".") && base != "localhost" {
			t.Fatalf("Domain(%q) = %q is a single label", raw, d)
		}
		if last := base[strings.LastIndexByte(base, '.')+1:]; strings.Trim(last, "0123456789") == "" {
			t.Fatalf("Domain(%q) = %q looks like an IP address", raw, d)
		}
		if base == "ghe.com" || (d != base && strings.Count(base, ".") == 0) {
			t.Fatalf("Domain(%q) = %q admits a public suffix", raw, d)
		}
		again, err := Domain(d)
		if err != nil || again != d {
			t.Fatalf("Domain(%q) = %q, but Domain(%q) = %q, %v", raw, d, d, again, err)
		}
	})
}
