package copilot

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Endpoints is the "endpoints" object of /copilot_internal/user and of the token exchange reply.
type Endpoints struct {
	API           string `json:"api,omitempty"`
	Telemetry     string `json:"telemetry,omitempty"`
	Proxy         string `json:"proxy,omitempty"`
	OriginTracker string `json:"origin-tracker,omitempty"`
}

// UserReply is the part of GET /copilot_internal/user that copilot-route uses.
type UserReply struct {
	Login       string    `json:"login"`
	CopilotPlan string    `json:"copilot_plan"`
	AccessType  string    `json:"access_type_sku"`
	ChatEnabled bool      `json:"chat_enabled"`
	Endpoints   Endpoints `json:"endpoints"`
}

// ParseUserReply decodes a /copilot_internal/user body. Unknown fields are ignored.
func ParseUserReply(body []byte) (UserReply, error) {
	var u UserReply
	if err := json.Unmarshal(body, &u); err != nil {
		return UserReply{}, fmt.Errorf("decode /copilot_internal/user reply: %w", err)
	}
	return u, nil
}

// ValidateEndpoint checks a Copilot host advertised by the platform before it is used: https,
// port 443 (or none), no userinfo, no IP literal, no query, and a host under githubcopilot.com or
// under the tenant's own NAME.ghe.com (tenantHost; empty on github.com). A tenant's endpoint
// under githubcopilot.com is refused: a data-residency tenant never goes to public hosts.
// It returns the normalised origin (https://host, plus the path with no trailing slash).
func ValidateEndpoint(raw, tenantHost string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("endpoint %q is not a URL", raw)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("endpoint %q is not https", raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("endpoint carries userinfo")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("endpoint %q carries a query or fragment", raw)
	}
	if p := u.Port(); p != "" && p != "443" {
		return "", fmt.Errorf("endpoint %q is not on port 443", raw)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "" || net.ParseIP(host) != nil || strings.ContainsAny(host, "[]:%") {
		return "", fmt.Errorf("endpoint %q has no host name", raw)
	}
	// url.Parse admits RFC 3986 sub-delims (!$&'()*+,;=) in a host: only DNS names may pass.
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return "", fmt.Errorf("endpoint %q has no valid DNS host name", raw)
		}
	}
	tenantHost = strings.ToLower(tenantHost)
	switch {
	case tenantHost != "":
		if !strings.HasSuffix(host, "."+tenantHost) {
			return "", fmt.Errorf("endpoint host %s is not under the tenant %s", host, tenantHost)
		}
	case !strings.HasSuffix(host, ".githubcopilot.com"):
		return "", fmt.Errorf("endpoint host %s is not under githubcopilot.com", host)
	}
	return "https://" + host + strings.TrimRight(u.EscapedPath(), "/"), nil
}
