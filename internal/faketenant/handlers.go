package faketenant

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxBody caps how much of a request body the tenant reads; the Copilot CLI's prompts with tool
// definitions are a few hundred KiB.
const maxBody = 32 << 20

// route is one endpoint: copilotAPI routes are the Copilot API host's (they get FirstByteDelay);
// the others are the GitHub REST API's.
type route struct {
	methods    []string
	copilotAPI bool
	noAuth     bool
	handle     func(t *Tenant, w http.ResponseWriter, r *http.Request, c *call)
}

// call is what the dispatcher learned about a request before its handler runs.
type call struct {
	b    Behavior
	path string // without the /api/v3 prefix
	body []byte
	json map[string]any
	idx  int // index in t.requests
	seq  int // that request's Request.seq

	initiator string // X-Initiator
	usage     *Usage // what the completion reported, once it finished
}

var routes = map[string]route{
	"/meta":                                  {methods: []string{"GET"}, noAuth: true, handle: (*Tenant).meta},
	"/user":                                  {methods: []string{"GET"}, handle: (*Tenant).account},
	"/copilot_internal/user":                 {methods: []string{"GET"}, handle: (*Tenant).user},
	"/copilot_internal/v2/token":             {methods: []string{"GET", "POST"}, handle: (*Tenant).exchange},
	"/copilot_internal/managed_settings":     {methods: []string{"GET"}, handle: (*Tenant).empty},
	"/copilot_internal/team_customizations":  {methods: []string{"GET"}, handle: (*Tenant).empty},
	"/models":                                {methods: []string{"GET"}, copilotAPI: true, handle: (*Tenant).models},
	"/mcp/readonly":                          {methods: []string{"POST", "GET", "DELETE"}, copilotAPI: true, handle: (*Tenant).mcp},
	"/agents/swe/internal/memory/v0/enabled": {methods: []string{"GET"}, copilotAPI: true, handle: (*Tenant).memoryEnabled},
	"/chat/completions":                      {methods: []string{"POST"}, copilotAPI: true, handle: (*Tenant).chatCompletions},
	"/responses":                             {methods: []string{"POST"}, copilotAPI: true, handle: (*Tenant).responses},
	"/v1/messages":                           {methods: []string{"POST"}, copilotAPI: true, handle: (*Tenant).messages},
	"/embeddings":                            {methods: []string{"POST"}, copilotAPI: true, handle: (*Tenant).embeddings},
	// The telemetry host's (endpoints.telemetry), sent without a credential: POST takes events,
	// GET ?tas-endpoint=... is the experiment-assignment look-up (CLI 1.0.43).
	"/telemetry": {methods: []string{"POST", "GET"}, noAuth: true, handle: (*Tenant).telemetry},
}

// lookupRoute finds the route for a path, also under the GHES-shaped /api/v3 prefix.
func lookupRoute(p string) (string, route, bool) {
	if rest, ok := strings.CutPrefix(p, "/api/v3"); ok && strings.HasPrefix(rest, "/") {
		p = rest
	}
	if p != "/" {
		p = strings.TrimSuffix(p, "/")
	}
	rt, ok := routes[p]
	return p, rt, ok
}

// remoteIP is the address part of a RemoteAddr ("10.0.0.1:41000" → "10.0.0.1").
func remoteIP(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func (t *Tenant) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	credHeader, scheme, cred := credential(r.Header)
	req := Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host,
		Header: r.Header.Clone(), BodyBytes: int64(len(body)), At: time.Now(), Proto: r.Proto, Body: body,
		AuthHeader: credHeader, AuthScheme: scheme, RemoteIP: remoteIP(r.RemoteAddr), Initiator: r.Header.Get("X-Initiator"),
	}
	if cred != "" {
		req.AuthTokenSHA256 = TokenSHA256(cred)
	}
	req.CredentialSHA256 = credentialHashes(r.Header)
	c := &call{body: body, initiator: req.Initiator}
	if len(body) > 0 {
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			c.json = m
			req.Model, _ = m["model"].(string)
			req.Stream, _ = m["stream"].(bool)
			if _, ok := m["jsonrpc"]; ok {
				req.RPCMethod, _ = m["method"].(string)
			}
		}
	}

	t.mu.Lock()
	c.b = t.behavior
	c.b.Status = cloneStatus(c.b.Status)
	req.Auth = t.classifyLocked(cred)
	t.seq++
	seq := t.seq
	c.idx, c.seq, req.seq = len(t.requests), seq, seq
	t.requests = append(t.requests, req)
	t.mu.Unlock()

	// The log line is written once the reply is done (also when a handler aborts), so that it can
	// say what the client got; its "at" is still when the request came.
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	if t.log != nil {
		defer func() {
			req.Usage = c.usage
			t.writeLog(req, sw.status)
		}()
	}

	w.Header().Set("X-GitHub-Request-Id", fmt.Sprintf("FAKE:%04X:%06X", seq, time.Now().UnixNano()&0xFFFFFF))
	if err != nil {
		writeError(w, http.StatusBadRequest, "could not read the request body: "+err.Error())
		return
	}

	path, rt, ok := lookupRoute(r.URL.Path)
	c.path = path
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if !contains(rt.methods, r.Method) {
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		writeError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	if !rt.noAuth {
		if status, msg := t.checkAuth(c.b, req.Auth, credHeader, scheme); status != 0 {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="GitHub"`)
			}
			writeError(w, status, msg)
			return
		}
	}
	if rt.copilotAPI && c.b.FirstByteDelay > 0 {
		if !t.sleep(r, c.b.FirstByteDelay) {
			return
		}
	}
	if st, ok := forcedStatus(c.b.Status, r.URL.Path, path); ok {
		if st == http.StatusTooManyRequests && c.b.RetryAfter != "" {
			w.Header().Set("Retry-After", c.b.RetryAfter)
		}
		writeError(w, st, http.StatusText(st))
		return
	}
	rt.handle(t, w, r, c)
}

func (t *Tenant) writeLog(req Request, status int) {
	l := req.LogLine()
	l.Status = status
	line, err := json.Marshal(l)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _ = t.log.Write(append(line, '\n'))
}

// statusWriter remembers the status of the reply; Unwrap keeps http.ResponseController's Flush
// and Hijack working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func forcedStatus(m map[string]int, raw, path string) (int, bool) {
	for _, k := range []string{raw, path} {
		if st, ok := m[k]; ok && st != 0 {
			return st, true
		}
	}
	return 0, false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// credentialHeaders are the headers a client may carry a credential in.
var credentialHeaders = []string{"Authorization", "X-Api-Key", "Api-Key"}

// credentialHashes hashes the value of every credential header present (Authorization's without
// its scheme), so a test can tell that a token reached the tenant in any of them, not only in the
// one the tenant used.
func credentialHashes(h http.Header) map[string]string {
	var out map[string]string
	for _, name := range credentialHeaders {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			continue
		}
		if name == "Authorization" {
			_, v = splitAuth(v)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = TokenSHA256(v)
	}
	return out
}

// credential finds the request's credential: the Authorization header (split into its scheme and
// the credential), else an API-key header as BYOK clients send to a provider — Anthropic's
// x-api-key, Azure OpenAI's api-key — which has no scheme.
func credential(h http.Header) (header, scheme, cred string) {
	if v := h.Get("Authorization"); strings.TrimSpace(v) != "" {
		scheme, cred = splitAuth(v)
		return "Authorization", scheme, cred
	}
	for _, name := range credentialHeaders[1:] {
		if v := strings.TrimSpace(h.Get(name)); v != "" {
			return name, "", v
		}
	}
	return "", "", ""
}

// splitAuth splits an Authorization header into its scheme and credential.
func splitAuth(h string) (scheme, cred string) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", ""
	}
	s, c, ok := strings.Cut(h, " ")
	if !ok {
		return "", h
	}
	return s, strings.TrimSpace(c)
}

func (t *Tenant) classifyLocked(cred string) string {
	switch {
	case cred == "":
		return "none"
	case t.token == "" || cred == t.token:
		return "real"
	case t.issued[cred]:
		return "copilot"
	default:
		return "wrong"
	}
}

// checkAuth answers like GitHub: no or a wrong credential → 401 "Bad credentials"; a scheme the
// tenant is set to refuse → 400 "Authorization header is badly formatted". A key in an API-key
// header (header != "Authorization") has no scheme to check.
func (t *Tenant) checkAuth(b Behavior, auth, header, scheme string) (int, string) {
	switch auth {
	case "none":
		return http.StatusUnauthorized, "Requires authentication"
	case "wrong":
		return http.StatusUnauthorized, "Bad credentials"
	}
	if header != "Authorization" {
		return 0, ""
	}
	s := strings.ToLower(scheme)
	if s != "bearer" && s != "token" {
		return http.StatusBadRequest, "Authorization header is badly formatted"
	}
	if want := strings.ToLower(b.RequireScheme); want != "" && s != want {
		return http.StatusBadRequest, "Authorization header is badly formatted"
	}
	return 0, ""
}

// sleep waits d, or until the client goes away or the tenant closes; false means stop.
func (t *Tenant) sleep(r *http.Request, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-r.Context().Done():
		return false
	case <-t.closing:
		return false
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"message":"fake tenant: encode reply"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// writeError writes GitHub's error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{
		"message":           msg,
		"documentation_url": "https://docs.github.com/rest",
		"status":            strconv.Itoa(status),
	})
}

// endpoints is the user reply's "endpoints" object. Asked on github.com's REST host (a client
// whose seat is on github.com: GH_HOST unset, or COPILOT_GH_HOST=github.com from a GHES server,
// with every name resolving here), it names github.com's Copilot hosts for the enterprise plan the
// reply claims; otherwise the tenant's. Behavior.AdvertisedAPI overrides "api" either way.
func (t *Tenant) endpoints(b Behavior, reqHost string) map[string]string {
	if h, _, err := net.SplitHostPort(reqHost); err == nil {
		reqHost = h
	}
	ep := map[string]string{
		"api":            "https://copilot-api." + t.host,
		"telemetry":      "https://copilot-telemetry-service." + t.host,
		"proxy":          "https://copilot-proxy." + t.host,
		"origin-tracker": "https://origin-tracker." + t.host,
	}
	if h := strings.ToLower(reqHost); h == "api.github.com" || h == "github.com" {
		ep = map[string]string{
			"api":            "https://api.enterprise.githubcopilot.com",
			"telemetry":      "https://telemetry.enterprise.githubcopilot.com",
			"proxy":          "https://proxy.enterprise.githubcopilot.com",
			"origin-tracker": "https://origin-tracker.enterprise.githubcopilot.com",
		}
	}
	if b.AdvertisedAPI != "" {
		ep["api"] = b.AdvertisedAPI
	}
	return ep
}

func (t *Tenant) meta(w http.ResponseWriter, _ *http.Request, _ *call) {
	writeJSON(w, http.StatusOK, map[string]any{
		"verifiable_password_authentication": false,
		"installed_version":                  "fake-tenant",
		"domains": map[string]any{
			"website":               []string{t.host, "*." + t.host},
			"copilot":               []string{"copilot-api." + t.host, "copilot-proxy." + t.host, "copilot-telemetry-service." + t.host},
			"packages":              []string{},
			"actions":               []string{},
			"codespaces":            []string{},
			"artifact_attestations": map[string]any{"trust_domain": t.host, "services": []string{}},
		},
	})
}

// account is GET /user: the token's owner, as the REST API says (diagnose tells "no seat" from
// "a token of another host" with it).
func (t *Tenant) account(w http.ResponseWriter, _ *http.Request, _ *call) {
	writeJSON(w, http.StatusOK, map[string]any{"login": "monalisa", "id": 1, "type": "User"})
}

func (t *Tenant) user(w http.ResponseWriter, r *http.Request, c *call) {
	if c.b.UserStatus != 0 && c.b.UserStatus != http.StatusOK {
		writeError(w, c.b.UserStatus, userMessage(c.b.UserStatus))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"login":                        "monalisa",
		"access_type_sku":              "copilot_enterprise_seat",
		"analytics_tracking_id":        "0123456789abcdef0123456789abcdef",
		"assigned_date":                "2026-01-05T10:00:00Z",
		"can_signup_for_limited":       false,
		"chat_enabled":                 true,
		"copilot_plan":                 "enterprise",
		"is_mcp_enabled":               true,
		"codex_agent_enabled":          true,
		"restricted_telemetry":         true,
		"organization_login_list":      []string{"acme"},
		"organization_list":            []map[string]any{{"login": "acme", "name": "Acme"}},
		"endpoints":                    t.endpoints(c.b, r.Host),
		"quota_reset_date":             "2026-12-01",
		"quota_snapshots":              map[string]any{"chat": map[string]any{"unlimited": true, "remaining": 0, "entitlement": 0, "percent_remaining": 100, "overage_permitted": false, "overage_count": 0, "quota_id": "chat"}, "completions": map[string]any{"unlimited": true, "remaining": 0, "entitlement": 0, "percent_remaining": 100, "overage_permitted": false, "overage_count": 0, "quota_id": "completions"}, "premium_interactions": map[string]any{"unlimited": true, "remaining": 0, "entitlement": 0, "percent_remaining": 100, "overage_permitted": true, "overage_count": 0, "quota_id": "premium_interactions"}},
		"copilotignore_enabled":        false,
		"chat_jetbrains_enabled":       true,
		"editor_preview_features":      true,
		"telemetry_settings":           map[string]any{"restricted": true},
		"copilot_enterprise_seat_info": map[string]any{"enterprise": "acme"},
	})
}

func userMessage(status int) string {
	switch status {
	case http.StatusNotFound:
		return "Not Found"
	case http.StatusForbidden:
		return "Copilot is not enabled for this user: ask an enterprise owner to assign a Copilot seat"
	case http.StatusUnauthorized:
		return "Bad credentials"
	}
	return http.StatusText(status)
}

func (t *Tenant) exchange(w http.ResponseWriter, r *http.Request, c *call) {
	if c.b.ExchangeStatus != 0 && c.b.ExchangeStatus != http.StatusOK {
		msg := c.b.ExchangeMessage
		if msg == "" {
			msg = http.StatusText(c.b.ExchangeStatus)
		}
		writeError(w, c.b.ExchangeStatus, msg)
		return
	}
	now := time.Now()
	exp := now.Add(30 * time.Minute).Unix()
	t.mu.Lock()
	t.seq++
	tok := fmt.Sprintf("tid=fake%06d;exp=%d;sku=copilot_enterprise_seat;proxy-ep=copilot-proxy.%s;st=dotcom;chat=1;8kp=1:%s",
		t.seq, exp, t.host, randHex(16))
	t.issued[tok] = true
	t.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token":                 tok,
		"expires_at":            exp,
		"refresh_in":            1500,
		"endpoints":             t.endpoints(c.b, r.Host),
		"sku":                   "copilot_enterprise_seat",
		"chat_enabled":          true,
		"annotations_enabled":   true,
		"code_quote_enabled":    true,
		"copilotignore_enabled": false,
		"public_suggestions":    "disabled",
		"telemetry":             "disabled",
		"tracking_id":           "0123456789abcdef0123456789abcdef",
	})
}

func (t *Tenant) empty(w http.ResponseWriter, _ *http.Request, _ *call) {
	writeJSON(w, http.StatusOK, map[string]any{})
}

// telemetry answers a POST as an Application Insights ingestion endpoint does: how many items (a
// JSON array's elements, or newline-delimited envelopes) it received and accepted; a GET as an
// experiment-assignment service with no experiment running.
func (t *Tenant) telemetry(w http.ResponseWriter, r *http.Request, c *call) {
	if r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, map[string]any{"Features": []any{}, "Flights": map[string]any{},
			"Configs": []any{}, "ParameterGroups": nil, "FlightingVersion": 0, "ImpressionId": "", "AssignmentContext": ""})
		return
	}
	body := c.body
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(zr, maxBody))
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "could not gunzip the body: "+err.Error())
			return
		}
	}
	var items []json.RawMessage
	n := 0
	if json.Unmarshal(body, &items) == nil {
		n = len(items)
	} else {
		for _, line := range bytes.Split(body, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				n++
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"itemsReceived": n, "itemsAccepted": n, "errors": []any{}})
}

func (t *Tenant) memoryEnabled(w http.ResponseWriter, _ *http.Request, _ *call) {
	writeJSON(w, http.StatusOK, map[string]any{"enabled": false})
}

func (t *Tenant) embeddings(w http.ResponseWriter, _ *http.Request, c *call) {
	inputs := 1
	if arr, ok := c.json["input"].([]any); ok {
		inputs = len(arr)
	}
	data := make([]map[string]any, inputs)
	for i := range data {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": []float64{0.125, -0.25, 0.5, 0.0625}}
	}
	model, _ := c.json["model"].(string)
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": model,
		"usage": map[string]any{"prompt_tokens": 4 * inputs, "total_tokens": 4 * inputs},
	})
}
