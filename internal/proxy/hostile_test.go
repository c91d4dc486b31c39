package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/copilot-route/copilot-route/internal/platform"
)

// hostileDir is the corpus: NAME.http holds the raw bytes of one attack (placeholders below are
// filled in at run time), NAME.want what must come of it.
const hostileDir = "../../testdata/hostile"

// hostileCase is one corpus entry. The .want file is "key: value" lines ('#' lines are the why):
//
//	status:         the statuses of the replies read in order on the connection ("closed": the
//	                proxy must close it without a reply)
//	reason:         a text the (first) refusal's body must hold
//	reach:          how many requests the fake tenant must record (default 0)
//	upstream-auth:  the credential kind the fake must see ("real")
//	upstream-host:  "fake": the forwarded request named the configured upstream, not the client's Host
//	upstream-has:   header names that must reach the fake
//	upstream-lacks: header names that must not
//	trickle:        send the bytes one at a time at this interval (slowloris)
//	halfclose:      "yes": shut the sending side after the bytes (a body that stops short)
//
// Placeholders in .http: {{CLIENT}} {{CLIENT_UPPER}} {{CLIENT_TRUNC}} {{CLIENT_PCT}} (first byte
// percent-encoded) {{REAL}} {{ADDR}}
// {{REPEAT:N:C}}.
type hostileCase struct {
	name string
	raw  []byte
	want map[string]string
}

func loadHostile(t *testing.T) []hostileCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(hostileDir, "*.http"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no hostile corpus under %s (%v)", hostileDir, err)
	}
	sort.Strings(files)
	var out []hostileCase
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		wf := strings.TrimSuffix(f, ".http") + ".want"
		wb, err := os.ReadFile(wf)
		if err != nil {
			t.Fatalf("%s has no %s: %v", f, filepath.Base(wf), err)
		}
		want := map[string]string{}
		for i, line := range strings.Split(string(wb), "\n") {
			if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("%s:%d: want 'key: value', got %q", wf, i+1, line)
			}
			want[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
		if want["status"] == "" {
			t.Fatalf("%s names no status", wf)
		}
		out = append(out, hostileCase{name: strings.TrimSuffix(filepath.Base(f), ".http"), raw: raw, want: want})
	}
	return out
}

var repeatPlaceholder = regexp.MustCompile(`\{\{REPEAT:(\d+):(.)\}\}`)

func (c hostileCase) fill(h *harness) []byte {
	addr := strings.TrimPrefix(h.url, "http://")
	b := strings.NewReplacer(
		"{{CLIENT}}", h.client,
		"{{CLIENT_UPPER}}", strings.ToUpper(h.client),
		"{{CLIENT_TRUNC}}", h.client[:len(h.client)-4],
		"{{CLIENT_PCT}}", fmt.Sprintf("%%%02X", h.client[0])+h.client[1:],
		"{{REAL}}", realToken,
		"{{ADDR}}", addr,
	).Replace(string(c.raw))
	return []byte(repeatPlaceholder.ReplaceAllStringFunc(b, func(m string) string {
		sub := repeatPlaceholder.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[1])
		return strings.Repeat(sub[2], n)
	}))
}

// TestHostileCorpus replays every case of testdata/hostile as raw bytes on a fresh TCP connection
// to a real proxy in front of the fake tenant (over TLS), and checks the exact replies and what
// reached the fake: for a refused request, nothing at all.
func TestHostileCorpus(t *testing.T) {
	t.Parallel()
	cases := loadHostile(t)
	if len(cases) < 40 {
		t.Errorf("the hostile corpus has %d cases, want at least 40", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := startTenant(t, realToken)
			h := setup(t, ft, platform.Input{}, func(c *Config) { c.MaxBodyBytes = 1 << 20 })
			ft.ResetRequests()
			raw := tc.fill(h)
			addr := strings.TrimPrefix(h.url, "http://")
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A bound on a hang, not a speed check: the slowest case (slowloris) is cut at 10 s.
			_ = conn.SetDeadline(time.Now().Add(90 * time.Second))

			var replies []string
			var firstBody string
			if tc.want["trickle"] != "" {
				replies = trickle(t, conn, raw, tc.want["trickle"])
			} else {
				if _, err := conn.Write(raw); err != nil {
					t.Fatalf("write: %v", err)
				}
				if tc.want["halfclose"] == "yes" {
					_ = conn.(*net.TCPConn).CloseWrite()
				}
				replies, firstBody = readReplies(t, conn, len(strings.Fields(tc.want["status"])))
			}
			if got := strings.Join(replies, " "); got != tc.want["status"] {
				t.Errorf("replies %q, want %q (first body %q)", got, tc.want["status"], cutString(firstBody, 300))
			}
			if r := tc.want["reason"]; r != "" && !strings.Contains(firstBody, `"message"`) || r != "" && !strings.Contains(firstBody, r) {
				t.Errorf("reply body %q, want JSON naming %q", cutString(firstBody, 300), r)
			}
			scanSecrets(t, "reply", []byte(firstBody), realToken)
			if r := tc.want["reason"]; r != "" {
				waitFor(t, "the refusal counted", func() bool {
					for _, rc := range h.p.Stats().RefusedReasons {
						if rc.Reason == r && rc.Count > 0 {
							return true
						}
					}
					return false
				})
			}
			conn.Close()
			checkUpstream(t, h, tc)
		})
	}
}

// readReplies reads n replies (1xx interim replies skipped) and returns their status codes, or
// "closed" when the proxy closed the connection without (further) reply.
func readReplies(t *testing.T, conn net.Conn, n int) ([]string, string) {
	t.Helper()
	br := bufio.NewReader(conn)
	var out []string
	first := ""
	for len(out) < n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
				out = append(out, "closed")
				return out, first
			}
			t.Fatalf("read reply %d: %v", len(out)+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue
		}
		if len(out) == 0 {
			first = string(body)
			var hb strings.Builder
			_ = resp.Header.Write(&hb)
			scanSecrets(t, "reply headers", []byte(hb.String()), realToken)
		}
		out = append(out, strconv.Itoa(resp.StatusCode))
	}
	return out, first
}

// trickle sends raw one byte per interval, as a slowloris client does, and reports "closed" if the
// proxy cut the connection before the headers were complete (any reply read is reported as its
// status instead).
func trickle(t *testing.T, conn net.Conn, raw []byte, every string) []string {
	t.Helper()
	d, err := time.ParseDuration(every)
	if err != nil {
		t.Fatalf("trickle %q: %v", every, err)
	}
	ticker := time.NewTicker(d)
	defer ticker.Stop()
	readErr := make(chan error, 1)
	readStatus := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			readErr <- err
			return
		}
		resp.Body.Close()
		readStatus <- strconv.Itoa(resp.StatusCode)
	}()
	sent := 0
	for sent < len(raw) {
		select {
		case s := <-readStatus:
			return []string{s}
		case err := <-readErr:
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
				t.Logf("the proxy cut the trickle after %d of %d bytes", sent, len(raw))
				return []string{"closed"}
			}
			t.Fatalf("reading while trickling: %v", err)
		case <-ticker.C:
			if _, err := conn.Write(raw[sent : sent+1]); err != nil {
				t.Logf("the proxy cut the trickle after %d of %d bytes (%v)", sent, len(raw), err)
				return []string{"closed"}
			}
			sent++
		}
	}
	t.Fatalf("all %d bytes trickled without the proxy cutting the connection", len(raw))
	return nil
}

// checkUpstream compares what the fake recorded with the case's expectations; the client token
// never reaches it in any form.
func checkUpstream(t *testing.T, h *harness, tc hostileCase) {
	t.Helper()
	want := 0
	if r := tc.want["reach"]; r != "" {
		want, _ = strconv.Atoi(r)
	}
	var got []string
	reqs := h.ft.Requests()
	for _, r := range reqs {
		got = append(got, r.Method+" "+r.Path)
		var hb strings.Builder
		_ = r.Header.Write(&hb)
		if strings.Contains(hb.String()+r.RawQuery+r.Path+string(r.Body), h.client) {
			t.Errorf("the client token reached the upstream in %s %s", r.Method, r.Path)
		}
	}
	if len(reqs) != want {
		t.Fatalf("the fake recorded %d requests %v, want %d", len(reqs), got, want)
	}
	if want == 0 {
		return
	}
	r := reqs[0]
	if a := tc.want["upstream-auth"]; a != "" && r.Auth != a {
		t.Errorf("the fake saw a %q credential, want %q", r.Auth, a)
	}
	if tc.want["upstream-host"] == "fake" && r.Host != hostPort(h.ft) {
		t.Errorf("the forwarded request named host %q, want the configured upstream %q", r.Host, hostPort(h.ft))
	}
	for _, k := range strings.Fields(tc.want["upstream-has"]) {
		if r.Header.Get(k) == "" {
			t.Errorf("%s did not reach the upstream", k)
		}
	}
	for _, k := range strings.Fields(tc.want["upstream-lacks"]) {
		if v := r.Header.Values(k); len(v) > 0 {
			t.Errorf("%s reached the upstream: %q", k, v)
		}
	}
}

// The production server cuts a slow client off: the header timeout that ends slowloris in the
// corpus is the one Serve uses, and header and body limits are set.
func TestServerLimits(t *testing.T) {
	t.Parallel()
	ft := startTenant(t, realToken)
	h := setup(t, ft, platform.Input{}, nil)
	srv := h.p.Server()
	if srv.ReadHeaderTimeout <= 0 || srv.ReadHeaderTimeout > 30*time.Second {
		t.Errorf("ReadHeaderTimeout = %v, want a bound of at most 30s", srv.ReadHeaderTimeout)
	}
	if srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes = %d", srv.MaxHeaderBytes)
	}
	if srv.IdleTimeout <= 0 {
		t.Errorf("IdleTimeout = %v: idle keep-alive connections would pile up", srv.IdleTimeout)
	}
}
