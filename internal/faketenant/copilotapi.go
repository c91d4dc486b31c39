package faketenant

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultModel is the model the tenant marks as the chat default.
const DefaultModel = "claude-sonnet-4.5"

// model describes one entry of GET /models.
type model struct {
	id, name, vendor, family string
	endpoints                []string
	premium                  bool
	multiplier               float64
	context, output          int
	isDefault                bool
}

var catalogue = []model{
	{id: "claude-sonnet-4.5", name: "Claude Sonnet 4.5", vendor: "Anthropic", family: "claude-sonnet-4.5",
		endpoints: []string{"/chat/completions", "/v1/messages"}, premium: true, multiplier: 1, context: 200000, output: 32000, isDefault: true},
	// Chat completions only, so a client asked for this model (copilot --model claude-sonnet-4)
	// must use /chat/completions: the CLI 1.0.102 picks the endpoint from this list.
	{id: "claude-sonnet-4", name: "Claude Sonnet 4", vendor: "Anthropic", family: "claude-sonnet-4",
		endpoints: []string{"/chat/completions"}, premium: true, multiplier: 1, context: 200000, output: 16000},
	{id: "gpt-5", name: "GPT-5", vendor: "Azure OpenAI", family: "gpt-5",
		endpoints: []string{"/chat/completions", "/responses"}, premium: true, multiplier: 1, context: 400000, output: 128000},
	{id: "gpt-5-mini", name: "GPT-5 mini", vendor: "Azure OpenAI", family: "gpt-5-mini",
		endpoints: []string{"/chat/completions", "/responses"}, context: 264000, output: 64000},
	// The CLI 1.0.102 does not offer gpt-4.1 ("not available"), whatever this entry says.
	{id: "gpt-4.1", name: "GPT-4.1", vendor: "Azure OpenAI", family: "gpt-4.1",
		endpoints: []string{"/chat/completions"}, context: 128000, output: 16384},
	// A fractional and a high multiplier, as the real catalogue has (0.33 for o4-mini, 10 for
	// the largest Claude): budgets in premium requests are decimals.
	{id: "o4-mini", name: "o4-mini", vendor: "Azure OpenAI", family: "o4-mini",
		endpoints: []string{"/chat/completions", "/responses"}, premium: true, multiplier: 0.33, context: 200000, output: 100000},
	{id: "claude-opus-4.1", name: "Claude Opus 4.1", vendor: "Anthropic", family: "claude-opus-4.1",
		endpoints: []string{"/chat/completions", "/v1/messages"}, premium: true, multiplier: 10, context: 200000, output: 32000},
}

// Multiplier is the billing.multiplier GET /models gives a model, and whether the model is in
// the catalogue: a user-initiated request costs that many premium requests.
func Multiplier(id string) (float64, bool) {
	for _, m := range catalogue {
		if m.id == id {
			return m.multiplier, true
		}
	}
	return 0, false
}

func (m model) json() map[string]any {
	return map[string]any{
		"id":                    m.id,
		"name":                  m.name,
		"object":                "model",
		"vendor":                m.vendor,
		"version":               m.id,
		"preview":               false,
		"model_picker_enabled":  true,
		"model_picker_category": map[bool]string{true: "powerful", false: "lightweight"}[m.premium],
		"is_chat_default":       m.isDefault,
		"is_chat_fallback":      m.id == "gpt-4.1",
		"capabilities": map[string]any{
			"family":    m.family,
			"object":    "model_capabilities",
			"type":      "chat",
			"tokenizer": "o200k_base",
			"limits": map[string]any{
				"max_context_window_tokens": m.context,
				"max_output_tokens":         m.output,
				"max_prompt_tokens":         m.context - m.output,
				"vision": map[string]any{
					"max_prompt_image_size": 3145728,
					"max_prompt_images":     5,
					"supported_media_types": []string{"image/jpeg", "image/png", "image/webp"},
				},
			},
			"supports": map[string]any{
				"streaming":           true,
				"tool_calls":          true,
				"parallel_tool_calls": true,
				"vision":              true,
				"structured_outputs":  true,
			},
		},
		"policy":              map[string]any{"state": "enabled", "terms": "Enabled by the acme enterprise policy."},
		"billing":             map[string]any{"is_premium": m.premium, "multiplier": m.multiplier, "restricted_to": []string{"enterprise"}},
		"supported_endpoints": m.endpoints,
	}
}

func (t *Tenant) models(w http.ResponseWriter, _ *http.Request, c *call) {
	if c.b.ModelsStatus != 0 && c.b.ModelsStatus != http.StatusOK {
		writeError(w, c.b.ModelsStatus, http.StatusText(c.b.ModelsStatus))
		return
	}
	data := make([]map[string]any, 0, len(catalogue)+1)
	for _, m := range catalogue {
		data = append(data, m.json())
	}
	data = append(data, map[string]any{
		"id": "text-embedding-3-small", "name": "Embedding V3 small", "object": "model", "vendor": "Azure OpenAI",
		"version": "text-embedding-3-small", "preview": false, "model_picker_enabled": false, "is_chat_default": false,
		"capabilities": map[string]any{"family": "text-embedding-3-small", "object": "model_capabilities", "type": "embeddings",
			"tokenizer": "cl100k_base", "limits": map[string]any{"max_inputs": 512}, "supports": map[string]any{"dimensions": true}},
		"policy": map[string]any{"state": "enabled", "terms": ""}, "supported_endpoints": []string{"/embeddings"},
	})
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// mcp answers the read-only GitHub MCP server's JSON-RPC (Streamable HTTP, JSON replies): an
// initialize handshake and an empty tool list are enough for a client to go on.
func (t *Tenant) mcp(w http.ResponseWriter, r *http.Request, c *call) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	id, hasID := c.json["id"]
	method, _ := c.json["method"].(string)
	w.Header().Set("Mcp-Session-Id", "fake-mcp-session")
	if !hasID || id == nil {
		w.WriteHeader(http.StatusAccepted) // a notification
		return
	}
	var result any
	switch method {
	case "initialize":
		pv := "2025-06-18"
		if p, ok := c.json["params"].(map[string]any); ok {
			if v, ok := p["protocolVersion"].(string); ok && v != "" {
				pv = v
			}
		}
		result = map[string]any{
			"protocolVersion": pv,
			"capabilities":    map[string]any{"tools": map[string]any{"listChanged": false}},
			"serverInfo":      map[string]any{"name": "github-mcp-server", "version": "fake-tenant"},
		}
	case "tools/list":
		result = map[string]any{"tools": []any{}}
	case "prompts/list":
		result = map[string]any{"prompts": []any{}}
	case "resources/list":
		result = map[string]any{"resources": []any{}}
	case "ping":
		result = map[string]any{}
	default:
		// What a server that predates a method answers (the CLI 1.0.102 probes "server/discover"
		// first and falls back to "initialize").
		writeJSON(w, http.StatusOK, map[string]any{"jsonrpc": "2.0", "id": id,
			"error": map[string]any{"code": -32601, "message": "Method not found: " + method}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// splitText cuts s into n pieces of about equal size (some may be empty when s is short).
func splitText(s string, n int) []string {
	if n < 1 {
		n = 1
	}
	r := []rune(s)
	out := make([]string, n)
	for i := 0; i < n; i++ {
		out[i] = string(r[len(r)*i/n : len(r)*(i+1)/n])
	}
	return out
}

// stream is an SSE writer that flushes every event and knows how to abort the connection.
type stream struct {
	t    *Tenant
	w    http.ResponseWriter
	r    *http.Request
	rc   *http.ResponseController
	b    Behavior
	sent int // text chunks written
}

// event writes one SSE event (name may be "") and flushes it.
func (s *stream) event(name string, v any, pad bool) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if pad && s.b.ChunkBytes > 0 {
		data = padJSON(data, s.b.ChunkBytes)
	}
	var sb strings.Builder
	if name != "" {
		sb.WriteString("event: " + name + "\n")
	}
	sb.WriteString("data: ")
	sb.Write(data)
	sb.WriteString("\n\n")
	if _, err := s.w.Write([]byte(sb.String())); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *stream) raw(line string) error {
	if _, err := s.w.Write([]byte(line)); err != nil {
		return err
	}
	return s.rc.Flush()
}

// padJSON adds a "fake_padding" member to a JSON object so the event is about size bytes; the
// clients ignore unknown members, so the text they show is unchanged.
func padJSON(obj []byte, size int) []byte {
	const overhead = len(`,"fake_padding":""`) + len("data: \n\n")
	n := size - len(obj) - overhead
	if n <= 0 || len(obj) < 2 || obj[len(obj)-1] != '}' {
		return obj
	}
	out := make([]byte, 0, size)
	out = append(out, obj[:len(obj)-1]...)
	out = append(out, `,"fake_padding":"`...)
	out = append(out, strings.Repeat("x", n)...)
	out = append(out, `"}`...)
	return out
}

var errStop = errors.New("stream stopped")

// beforeChunk runs before text chunk number s.sent: it waits for the gate and the interval, and
// aborts the connection once ResetAfterChunks chunks are out. A non-nil error ends the handler.
func (s *stream) beforeChunk() error {
	if s.b.ResetAfterChunks > 0 && s.sent >= s.b.ResetAfterChunks {
		s.reset()
		return errStop
	}
	if s.sent == 0 {
		return nil
	}
	if s.b.Gate != nil {
		select {
		case <-s.b.Gate:
		case <-s.r.Context().Done():
			return errStop
		case <-s.t.closing:
			return errStop
		}
	}
	if s.b.ChunkInterval > 0 && !s.t.sleep(s.r, s.b.ChunkInterval) {
		return errStop
	}
	if s.r.Context().Err() != nil {
		return errStop
	}
	return nil
}

// reset aborts the connection so the client sees an error rather than a clean end of stream: on
// HTTP/1.1 the TCP connection is closed with SO_LINGER 0 (an RST); on HTTP/2, where the
// connection is shared, the handler aborts and the server resets the stream.
func (s *stream) reset() {
	if s.r.ProtoMajor == 1 {
		if conn, _, err := s.rc.Hijack(); err == nil {
			var nc net.Conn = conn
			if tc, ok := nc.(interface{ NetConn() net.Conn }); ok {
				nc = tc.NetConn()
			}
			if tcp, ok := nc.(*net.TCPConn); ok {
				_ = tcp.SetLinger(0)
			}
			_ = nc.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// run writes the text chunks with chunk(i, text) between start and finish, honouring the stream
// switches. It tracks the stream as open while it runs.
func (t *Tenant) runStream(w http.ResponseWriter, r *http.Request, b Behavior,
	start func(*stream) error, chunk func(*stream, int, string) error, finish func(*stream, string) error) {
	s := &stream{t: t, w: w, r: r, rc: http.NewResponseController(w), b: b}
	t.streamStarted()
	canceled := false
	defer func() { t.streamEnded(canceled) }()
	// Flag a client that went away, whatever way the handler stops.
	defer func() {
		if r.Context().Err() != nil {
			canceled = true
		}
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := s.rc.Flush(); err != nil {
		return
	}
	text := b.ReplyText
	if text == "" {
		text = DefaultReplyText
	}
	n := b.StreamChunks
	if n <= 0 {
		n = 8
	}
	if start(s) != nil {
		return
	}
	pieces := splitText(text, n)
	for i := 0; b.NeverEnd || i < n; i++ {
		if s.beforeChunk() != nil {
			return
		}
		if chunk(s, i, pieces[i%n]) != nil {
			return
		}
		s.sent++
	}
	if b.ResetAfterChunks > 0 && s.sent >= b.ResetAfterChunks {
		s.reset()
		return
	}
	_ = finish(s, text)
}

func (t *Tenant) nextID(prefix string) string {
	t.mu.Lock()
	t.seq++
	n := t.seq
	t.mu.Unlock()
	return fmt.Sprintf("%s%08d", prefix, n)
}

func requestModel(c *call) string {
	if m, _ := c.json["model"].(string); m != "" {
		return m
	}
	return DefaultModel
}

func wantsStream(c *call) bool {
	s, _ := c.json["stream"].(bool)
	return s
}

func replyText(b Behavior) string {
	if b.ReplyText != "" {
		return b.ReplyText
	}
	return DefaultReplyText
}

// The usage every completion reports, in each wire format's own fields: promptTokens prompt
// tokens processed, cachedTokens of them read from the prompt cache and cacheWriteTokens written
// to it, and one output token per word of the reply plus one.
const (
	promptTokens     = 42
	cachedTokens     = 16
	cacheWriteTokens = 4
)

func outputTokens(text string) int { return len(strings.Fields(text)) + 1 }

// openAIUsage is chat completions' usage: prompt_tokens counts every prompt token, cached ones
// included (and also given in prompt_tokens_details).
func openAIUsage(out int) map[string]any {
	return map[string]any{"prompt_tokens": promptTokens, "completion_tokens": out, "total_tokens": promptTokens + out,
		"prompt_tokens_details": map[string]any{"cached_tokens": cachedTokens}}
}

// anthropicUsage is the Messages API's: input_tokens leaves out the tokens read from and written
// to the cache, which come in fields of their own.
func anthropicUsage(out int) map[string]any {
	return map[string]any{"input_tokens": promptTokens - cachedTokens - cacheWriteTokens, "output_tokens": out,
		"cache_read_input_tokens": cachedTokens, "cache_creation_input_tokens": cacheWriteTokens}
}

// spend records what a finished completion cost (Request.Usage) and is sent with the reply's
// quota snapshot headers before it.
func (t *Tenant) spend(c *call, mdl string, out int) {
	mult, ok := Multiplier(mdl)
	if !ok {
		mult = 1
	}
	u := &Usage{Model: mdl, InputTokens: promptTokens, CachedTokens: cachedTokens, OutputTokens: int64(out)}
	if c.initiator != "agent" {
		u.Premium = mult
	}
	c.usage = u
	t.mu.Lock()
	defer t.mu.Unlock()
	t.premiumUsed += u.Premium
	if c.idx < len(t.requests) && t.requests[c.idx].seq == c.seq {
		t.requests[c.idx].Usage = u
	}
}

// QuotaEntitlement is the premium requests a month the tenant's quota snapshot reports.
const QuotaEntitlement = 300

// QuotaReset is the reset time in the tenant's quota snapshots.
const QuotaReset = "2026-12-01T00:00:00Z"

// quotaHeaders sets the X-Quota-Snapshot-* headers the Copilot API sends with a completion:
// URL-encoded entitlement, overage, overage permitted, remaining percent and reset.
func (t *Tenant) quotaHeaders(h http.Header) {
	t.mu.Lock()
	used := t.premiumUsed
	t.mu.Unlock()
	rem := 100 * (QuotaEntitlement - used) / QuotaEntitlement
	ov := 0.0
	if rem < 0 {
		ov, rem = used-QuotaEntitlement, 0
	}
	v := url.Values{"ent": {strconv.Itoa(QuotaEntitlement)}, "ov": {strconv.FormatFloat(ov, 'f', 1, 64)},
		"ovPerm": {"false"}, "rem": {strconv.FormatFloat(rem, 'f', 1, 64)}, "rst": {QuotaReset}}
	h["X-Quota-Snapshot-Premium_interactions"] = []string{v.Encode()}
	h["X-Quota-Snapshot-Chat"] = []string{"ent=-1&ov=0.0&ovPerm=false&rem=100.0&rst=" + url.QueryEscape(QuotaReset)}
}

func (t *Tenant) chatCompletions(w http.ResponseWriter, r *http.Request, c *call) {
	id, mdl, created := t.nextID("chatcmpl-fake"), requestModel(c), time.Now().Unix()
	t.quotaHeaders(w.Header())
	if !wantsStream(c) {
		text := replyText(c.b)
		out := outputTokens(text)
		t.spend(c, mdl, out)
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": mdl,
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": text}}},
			"usage": openAIUsage(out),
		})
		return
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": mdl,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	t.runStream(w, r, c.b,
		func(s *stream) error { return nil },
		func(s *stream, i int, text string) error {
			d := map[string]any{"content": text}
			if i == 0 {
				d["role"] = "assistant"
			}
			return s.event("", chunk(d, nil), true)
		},
		func(s *stream, text string) error {
			out := outputTokens(text)
			last := chunk(map[string]any{}, "stop")
			if s.b.SeparateUsageChunk {
				// OpenAI's stream_options.include_usage shape: the finish chunk, then one with no
				// choices and the usage.
				if err := s.event("", last, false); err != nil {
					return err
				}
				last = map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": mdl, "choices": []any{}}
			}
			last["usage"] = openAIUsage(out)
			t.spend(c, mdl, out)
			if err := s.event("", last, false); err != nil {
				return err
			}
			return s.raw("data: [DONE]\n\n")
		})
}

func (t *Tenant) responses(w http.ResponseWriter, r *http.Request, c *call) {
	id, msgID, mdl, created := t.nextID("resp_fake"), t.nextID("msg_fake"), requestModel(c), time.Now().Unix()
	message := func(text, status string) map[string]any {
		content := []any{}
		if status == "completed" {
			content = append(content, map[string]any{"type": "output_text", "text": text, "annotations": []any{}})
		}
		return map[string]any{"id": msgID, "type": "message", "status": status, "role": "assistant", "content": content}
	}
	response := func(status string, output []any, text string) map[string]any {
		resp := map[string]any{"id": id, "object": "response", "created_at": created, "status": status, "model": mdl,
			"output": output, "error": nil, "incomplete_details": nil}
		if status == "completed" {
			out := outputTokens(text)
			// input_tokens counts cached ones too, as chat completions' prompt_tokens does.
			resp["usage"] = map[string]any{"input_tokens": promptTokens, "output_tokens": out, "total_tokens": promptTokens + out,
				"input_tokens_details": map[string]any{"cached_tokens": cachedTokens}, "output_tokens_details": map[string]any{"reasoning_tokens": 0}}
		} else {
			resp["usage"] = nil
		}
		return resp
	}
	t.quotaHeaders(w.Header())
	if !wantsStream(c) {
		text := replyText(c.b)
		t.spend(c, mdl, outputTokens(text))
		writeJSON(w, http.StatusOK, response("completed", []any{message(text, "completed")}, text))
		return
	}
	seq := 0
	ev := func(s *stream, typ string, v map[string]any, pad bool) error {
		v["type"] = typ
		v["sequence_number"] = seq
		seq++
		return s.event(typ, v, pad)
	}
	t.runStream(w, r, c.b,
		func(s *stream) error {
			if err := ev(s, "response.created", map[string]any{"response": response("in_progress", []any{}, "")}, false); err != nil {
				return err
			}
			if err := ev(s, "response.in_progress", map[string]any{"response": response("in_progress", []any{}, "")}, false); err != nil {
				return err
			}
			if err := ev(s, "response.output_item.added", map[string]any{"output_index": 0, "item": message("", "in_progress")}, false); err != nil {
				return err
			}
			return ev(s, "response.content_part.added", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0,
				"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}}, false)
		},
		func(s *stream, _ int, text string) error {
			return ev(s, "response.output_text.delta", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "delta": text}, true)
		},
		func(s *stream, text string) error {
			steps := []struct {
				typ string
				v   map[string]any
			}{
				{"response.output_text.done", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "text": text}},
				{"response.content_part.done", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0,
					"part": map[string]any{"type": "output_text", "text": text, "annotations": []any{}}}},
				{"response.output_item.done", map[string]any{"output_index": 0, "item": message(text, "completed")}},
				{"response.completed", map[string]any{"response": response("completed", []any{message(text, "completed")}, text)}},
			}
			t.spend(c, mdl, outputTokens(text))
			for _, st := range steps {
				if err := ev(s, st.typ, st.v, false); err != nil {
					return err
				}
			}
			return nil
		})
}

func (t *Tenant) messages(w http.ResponseWriter, r *http.Request, c *call) {
	id, mdl := t.nextID("msg_fake"), requestModel(c)
	t.quotaHeaders(w.Header())
	if !wantsStream(c) {
		text := replyText(c.b)
		out := outputTokens(text)
		t.spend(c, mdl, out)
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": mdl,
			"content":     []any{map[string]any{"type": "text", "text": text}},
			"stop_reason": "end_turn", "stop_sequence": nil,
			"usage": anthropicUsage(out),
		})
		return
	}
	t.runStream(w, r, c.b,
		func(s *stream) error {
			// message_start's output_tokens is already 1; message_delta's is the running total,
			// not an increment.
			if err := s.event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
				"id": id, "type": "message", "role": "assistant", "model": mdl, "content": []any{},
				"stop_reason": nil, "stop_sequence": nil, "usage": anthropicUsage(1)}}, false); err != nil {
				return err
			}
			if err := s.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
				"content_block": map[string]any{"type": "text", "text": ""}}, false); err != nil {
				return err
			}
			return s.event("ping", map[string]any{"type": "ping"}, false)
		},
		func(s *stream, _ int, text string) error {
			return s.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
				"delta": map[string]any{"type": "text_delta", "text": text}}, true)
		},
		func(s *stream, text string) error {
			out := outputTokens(text)
			if err := s.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}, false); err != nil {
				return err
			}
			t.spend(c, mdl, out)
			if err := s.event("message_delta", map[string]any{"type": "message_delta",
				"delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil},
				"usage": map[string]any{"output_tokens": out}}, false); err != nil {
				return err
			}
			return s.event("message_stop", map[string]any{"type": "message_stop"}, false)
		})
}
