// Package copilot holds what copilot-route knows about the Copilot API: token kinds, the headers
// Copilot expects, the /copilot_internal/user discovery reply and the token exchange.
package copilot

import (
	"log/slog"
	"strings"
)

// Token is a credential. It never prints: fmt, slog and JSON all see "[REDACTED]". Use Reveal
// only where the value must go on the wire.
type Token struct{ v string }

// NewToken normalises a token as users paste it: surrounding white space and a "Bearer " or
// "token " prefix (any case) are stripped.
func NewToken(raw string) Token { return Token{v: Normalize(raw)} }

// Normalize strips white space and an Authorization scheme from a pasted token.
func Normalize(raw string) string {
	s := strings.TrimSpace(raw)
	for _, p := range []string{"bearer ", "token "} {
		if len(s) > len(p) && strings.EqualFold(s[:len(p)], p) {
			s = strings.TrimSpace(s[len(p):])
			break
		}
	}
	return s
}

func (t Token) Reveal() string               { return t.v }
func (t Token) IsZero() bool                 { return t.v == "" }
func (t Token) String() string               { return redacted(t.v) }
func (t Token) GoString() string             { return "copilot.Token(" + redacted(t.v) + ")" }
func (t Token) LogValue() slog.Value         { return slog.StringValue(redacted(t.v)) }
func (t Token) MarshalText() ([]byte, error) { return []byte(redacted(t.v)), nil }
func (t Token) Kind() TokenKind              { return KindOf(t.v) }

func redacted(v string) string {
	if v == "" {
		return ""
	}
	return "[REDACTED]"
}

// TokenKind is what a token's prefix says it is.
type TokenKind string

const (
	KindOAuth          TokenKind = "oauth"            // gho_
	KindUserToServer   TokenKind = "user-to-server"   // ghu_
	KindFineGrainedPAT TokenKind = "fine-grained-pat" // github_pat_
	KindInstallation   TokenKind = "installation"     // ghs_: Actions GITHUB_TOKEN or an App installation
	KindClassicPAT     TokenKind = "classic-pat"      // ghp_: refused by Copilot
	KindUnknown        TokenKind = "unknown"
	KindNone           TokenKind = "none"
)

// KindOf classifies a (normalised) token by its prefix only.
func KindOf(tok string) TokenKind {
	switch {
	case tok == "":
		return KindNone
	case strings.HasPrefix(tok, "gho_"):
		return KindOAuth
	case strings.HasPrefix(tok, "ghu_"):
		return KindUserToServer
	case strings.HasPrefix(tok, "github_pat_"):
		return KindFineGrainedPAT
	case strings.HasPrefix(tok, "ghs_"):
		return KindInstallation
	case strings.HasPrefix(tok, "ghp_"):
		return KindClassicPAT
	}
	return KindUnknown
}

// WorksWithCopilot says whether Copilot accepts this kind of token at all.
func (k TokenKind) WorksWithCopilot() bool {
	switch k {
	case KindOAuth, KindUserToServer, KindFineGrainedPAT, KindInstallation:
		return true
	}
	return false
}

// CanDiscover says whether the token may call /copilot_internal/user (the real CLI skips the
// REST look-ups for ghs_ tokens, and they answer 403 for installation tokens).
func (k TokenKind) CanDiscover() bool {
	return k == KindOAuth || k == KindUserToServer || k == KindFineGrainedPAT
}

// MaskForms lists every form of a token that must be masked in logs: as given, normalised, and
// with each Authorization scheme in front.
func MaskForms(raw string) []string {
	n := Normalize(raw)
	if n == "" {
		return nil
	}
	forms := []string{n, "Bearer " + n, "token " + n, "bearer " + n}
	if t := strings.TrimSpace(raw); t != n {
		forms = append(forms, t)
	}
	return forms
}
