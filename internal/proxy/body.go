package proxy

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync/atomic"
)

// Reading the model an inference request names. Under a model policy or a premium-request budget
// the body is read whole (once, within MaxBodyBytes) before anything goes upstream, the "model"
// member is found without decoding the rest, and the same bytes are forwarded: nothing is
// re-encoded. Otherwise the model is only reported, and modelSniffer finds it as the body streams
// upstream.

// Why a body names no usable model.
const (
	bodyNotJSON        = "body-not-json"       // not valid JSON: the tenant's parser could read anything
	bodyNotObject      = "body-not-object"     // JSON, but not an object
	bodyNoModel        = "model-missing"       // no "model": the tenant would choose one
	bodyModelNotString = "model-not-string"    // "model": null, a number, an object
	bodyModelTwice     = "model-duplicated"    // two "model" members: parsers disagree on which wins
	bodyModelCase      = "model-key-ambiguous" // "Model", "MODEL", "mod\u0065l"...: case-insensitive parsers read it as the model
	bodyEncoded        = "body-encoded"        // Content-Encoding: the tenant would decode a body the proxy cannot read
)

// modelOf finds the top-level "model" string of a JSON request body. A body a parser could read
// differently from the proxy is refused: not valid JSON, "model" twice, or a key that equals
// "model" only case-insensitively or once its escapes are decoded.
func modelOf(body []byte) (model, problem string) {
	if !json.Valid(body) {
		return "", bodyNotJSON
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", bodyNotObject
	}
	i++
	found := false
	for {
		i = skipSpace(body, i)
		if i >= len(body) || body[i] == '}' {
			break
		}
		kEnd := skipString(body, i)
		key := body[i:kEnd]
		i = skipSpace(body, kEnd) + 1 // ':'
		i = skipSpace(body, i)
		vEnd := skipValue(body, i)
		switch isModelKey(key) {
		case keyModel:
			if found {
				return "", bodyModelTwice
			}
			found = true
			if body[i] != '"' {
				return "", bodyModelNotString
			}
			model = jsonString(body[i:vEnd])
		case keyModelVariant:
			return "", bodyModelCase
		}
		i = skipSpace(body, vEnd)
		if i < len(body) && body[i] == ',' {
			i++
		}
	}
	if !found {
		return "", bodyNoModel
	}
	return model, ""
}

type keyKind uint8

const (
	keyOther keyKind = iota
	keyModel
	keyModelVariant
)

// isModelKey classifies a quoted JSON key.
func isModelKey(quoted []byte) keyKind {
	if string(quoted) == `"model"` {
		return keyModel
	}
	if len(quoted) < 7 || (bytes.IndexByte(quoted, '\\') < 0 && len(quoted) != 7) {
		return keyOther
	}
	if k := jsonString(quoted); k == "model" {
		return keyModelVariant // "mod\u0065l": some parsers compare the raw text
	} else if strings.EqualFold(k, "model") {
		return keyModelVariant
	}
	return keyOther
}

// topLevelKeys reports whether a JSON object has a top-level key equal, case-insensitively, to any
// of names (a body already known to be valid JSON).
func topLevelKeys(body []byte, names ...string) (string, bool) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", false
	}
	i++
	for {
		i = skipSpace(body, i)
		if i >= len(body) || body[i] == '}' {
			return "", false
		}
		kEnd := skipString(body, i)
		k := body[i:kEnd]
		if bytes.IndexByte(k, '\\') >= 0 || len(k) <= 12 {
			ks := jsonString(k)
			for _, n := range names {
				if strings.EqualFold(ks, n) {
					return n, true
				}
			}
		}
		i = skipSpace(body, kEnd) + 1
		i = skipSpace(body, i)
		i = skipSpace(body, skipValue(body, i))
		if i < len(body) && body[i] == ',' {
			i++
		}
	}
}

// jsonString decodes a quoted JSON string; the fast path has no escape.
func jsonString(quoted []byte) string {
	if len(quoted) >= 2 && bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1])
	}
	var s string
	_ = json.Unmarshal(quoted, &s)
	return s
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"').
func skipString(b []byte, i int) int {
	i++
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i
		}
	}
	return i
}

// skipValue returns the index after the JSON value starting at b[i] (valid JSON assumed).
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

// modelSniffer finds the top-level "model" string of a JSON body as it streams past in pieces,
// for the usage report only (nothing is decided on it): escapes are not decoded, and a value over
// 128 bytes is cut. Only the goroutine reading the body feeds it; the result is read with Model.
type modelSniffer struct {
	depth     int
	inStr     bool
	esc       bool
	isKey     bool // the string being read is a top-level key
	capture   bool // the string being read is kept (a top-level key, or the model's value)
	wantKey   bool // the next top-level string is a key
	afterKey  bool // the last top-level key was "model" and its value has not begun
	cur       []byte
	done      bool
	result    atomic.Pointer[string]
	truncated bool
}

const sniffCap = 128

// Model is the model found so far, or "".
func (s *modelSniffer) Model() string {
	if m := s.result.Load(); m != nil {
		return *m
	}
	return ""
}

func (s *modelSniffer) feed(b []byte) {
	for i := 0; i < len(b) && !s.done; i++ {
		c := b[i]
		if s.inStr {
			if !s.capture && !s.esc {
				// Skip to the next quote; most of a prompt is inside strings.
				j := bytes.IndexByte(b[i:], '"')
				if j < 0 {
					s.esc = trailingBackslashes(b[i:], false)
					return
				}
				if j > 0 {
					s.esc = trailingBackslashes(b[i:i+j], false)
					i += j - 1
					continue
				}
			}
			switch {
			case s.esc:
				s.esc = false
				s.keep(c)
			case c == '\\':
				s.esc = true
			case c == '"':
				s.inStr = false
				s.endString()
			default:
				s.keep(c)
			}
			continue
		}
		switch c {
		case '"':
			s.inStr, s.cur, s.truncated = true, s.cur[:0], false
			s.isKey = s.depth == 1 && s.wantKey
			s.capture = s.isKey || (s.depth == 1 && s.afterKey)
			s.wantKey = false
		case '{', '[':
			s.depth++
			if s.depth == 1 {
				s.wantKey = c == '{'
			} else if s.depth == 2 {
				s.afterKey = false
			}
		case '}', ']':
			s.depth--
		case ',':
			if s.depth == 1 {
				s.wantKey, s.afterKey = true, false
			}
		case ':', ' ', '\t', '\r', '\n':
		default:
			if s.depth == 1 {
				s.afterKey = false // a scalar value
			}
		}
	}
}

func (s *modelSniffer) keep(c byte) {
	if !s.capture {
		return
	}
	if len(s.cur) < sniffCap {
		s.cur = append(s.cur, c)
	} else {
		s.truncated = true
	}
}

func (s *modelSniffer) endString() {
	switch {
	case s.isKey:
		s.afterKey = string(s.cur) == "model"
	case s.capture:
		m := string(s.cur)
		if s.truncated {
			m += "…"
		}
		s.result.Store(&m)
		s.done = true
	}
	s.capture, s.isKey = false, false
}

// trailingBackslashes says whether b ends in an odd run of backslashes (the next byte is
// escaped), given whether the byte before b was escaping.
func trailingBackslashes(b []byte, esc bool) bool {
	n := 0
	for k := len(b) - 1; k >= 0 && b[k] == '\\'; k-- {
		n++
	}
	if n == len(b) {
		return esc != (n%2 == 1)
	}
	return n%2 == 1
}
