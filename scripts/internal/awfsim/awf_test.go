package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	o, err := Parse(strings.Fields("--enable-host-access --allow-host-ports 8790 --allow-domains host.docker.internal,registry.npmjs.org " +
		"--block-domains api.acme.ghe.com,copilot-api.acme.ghe.com --env-all --exclude-env SECRET -e A=1 --env=B=2 -- copilot -p hi --allow-all-tools"))
	if err != nil {
		t.Fatal(err)
	}
	want := Options{AllowDomains: []string{"host.docker.internal", "registry.npmjs.org"}, BlockDomains: []string{"api.acme.ghe.com", "copilot-api.acme.ghe.com"},
		HostAccess: true, AllowHostPorts: []string{"8790"}, EnvAll: true, ExcludeEnv: []string{"SECRET"}, Env: []string{"A=1", "B=2"},
		Command: []string{"copilot", "-p", "hi", "--allow-all-tools"}}
	if !slices.Equal(o.AllowDomains, want.AllowDomains) || !slices.Equal(o.BlockDomains, want.BlockDomains) || o.HostAccess != want.HostAccess ||
		!slices.Equal(o.AllowHostPorts, want.AllowHostPorts) || !o.EnvAll || !slices.Equal(o.ExcludeEnv, want.ExcludeEnv) ||
		!slices.Equal(o.Env, want.Env) || !slices.Equal(o.Command, want.Command) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", o, want)
	}
	for _, bad := range []string{
		"--allow-host-ports 8790 -- x",                     // awf: requires --enable-host-access
		"--enable-host-access --allow-host-ports 080 -- x", // leading zero
		"--allow-domains * -- x",
		"--allow-domains *.* -- x",
		"--allow-domains a..b -- x",
		"--allow-domains *.*.com -- x",
		"--allow-domains a;b -- x",
		"--allow-domains",
		"--no-such-flag -- x",
		"--allow-domains a.example.com",
	} {
		if _, err := Parse(strings.Fields(bad)); err == nil {
			t.Errorf("Parse(%q) accepted it", bad)
		}
	}
}

// The allowlist awf hands Squid: on a GHE.com runner the tenant's hosts join it from the
// environment, whatever --allow-domains says.
func TestAllowedDomainsAddsTheTenant(t *testing.T) {
	t.Parallel()
	env := map[string]string{"GITHUB_SERVER_URL": "https://acme.ghe.com", "GITHUB_API_URL": "https://api.acme.ghe.com"}
	got := AllowedDomains(Options{AllowDomains: []string{"host.docker.internal", "acme.ghe.com"}}, func(k string) string { return env[k] })
	want := []string{"host.docker.internal", "acme.ghe.com", "api.acme.ghe.com", "copilot-api.acme.ghe.com", "copilot-telemetry-service.acme.ghe.com"}
	if !slices.Equal(got, want) {
		t.Errorf("AllowedDomains = %q, want %q", got, want)
	}
	if got := AllowedDomains(Options{AllowDomains: []string{"x.example.com"}}, func(k string) string {
		return map[string]string{"GITHUB_SERVER_URL": "https://github.com", "GITHUB_API_URL": "https://api.github.com"}[k]
	}); !slices.Equal(got, []string{"x.example.com"}) {
		t.Errorf("github.com runner: AllowedDomains = %q", got)
	}
}

// The ACL lines for awf's documented rules: a bare name admits its subdomains (.x), so a
// subdomain of it is dropped, as is a name a pattern covers; *.x is a regex for subdomains only;
// a scheme keeps an entry to that protocol; blocked names come before every allow.
func TestSquidConfig(t *testing.T) {
	t.Parallel()
	o := Options{HostAccess: true, AllowHostPorts: []string{"8790"}, BlockDomains: []string{"api.acme.ghe.com", "https://copilot-api.acme.ghe.com"}}
	allowed := []string{"acme.ghe.com", "api.acme.ghe.com", "host.docker.internal", "*.wild.example", "a.wild.example",
		"https://tls.example", "x.tls.example", "http://plain.example", "https://sub.plain.example"}
	conf := SquidConfig(o, allowed, SquidFiles{Dir: "/s", HostsFile: "/s/hosts"})
	for _, want := range []string{
		"acl blocked_domains dstdomain .api.acme.ghe.com\nacl blocked_domains dstdomain .copilot-api.acme.ghe.com\n",
		"acl allowed_domains dstdomain .acme.ghe.com\nacl allowed_domains dstdomain .host.docker.internal\nacl allowed_domains dstdomain .x.tls.example\n",
		`acl allowed_domains_regex dstdom_regex -i ^[a-zA-Z0-9.-]*\.wild\.example$`,
		"acl allowed_http_only dstdomain .plain.example\n",
		"acl allowed_https_only dstdomain .tls.example\nacl allowed_https_only dstdomain .sub.plain.example\n",
		"acl Safe_ports port 443\nacl Safe_ports port 8790\n",
		"http_access deny blocked_domains\nhttp_access allow !CONNECT allowed_http_only\nhttp_access allow CONNECT allowed_https_only\n" +
			"http_access deny !allowed_domains !allowed_domains_regex\nhttp_access allow localnet\n",
		"http_access deny dst_ipv4\n",
		"hosts_file /s/hosts\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("squid.conf lacks\n%s\n--- squid.conf ---\n%s", want, conf)
		}
	}
	for _, never := range []string{
		"acl allowed_domains dstdomain .api.acme.ghe.com\n",  // covered by acme.ghe.com
		"dstdomain .a.wild.example\n",                        // covered by *.wild.example
		"acl allowed_domains dstdomain .tls.example\n",       // https only
		"acl allowed_https_only dstdomain .x.tls.example\n",  // both protocols: not covered by an https-only entry
		"acl allowed_http_only dstdomain .sub.plain.example", // https only, not covered by an http-only entry
	} {
		if strings.Contains(conf, never) {
			t.Errorf("squid.conf holds %q, which awf drops or keeps elsewhere", never)
		}
	}
	if c := SquidConfig(Options{}, nil, SquidFiles{}); !strings.Contains(c, "# No domains configured\n") || !strings.Contains(c, "acl Safe_ports port 443\nacl CONNECT") ||
		!strings.Contains(c, "\nhttp_access deny all\nhttp_access allow localnet") {
		t.Errorf("no domains, no host access:\n%s", c)
	}
}

func TestAgentEnv(t *testing.T) {
	t.Parallel()
	environ := []string{"PATH=/runner/bin:/usr/bin", "HOME=/home/runner", "GITHUB_SERVER_URL=https://acme.ghe.com",
		"COPILOT_API_URL=http://host.docker.internal:8790", "HTTPS_PROXY=http://corp:3128", "SECRET=x", "AWF_SIM_DIR=/sim", "SUDO_USER=runner"}
	env := AgentEnv(Options{HostAccess: true, EnvAll: true, ExcludeEnv: []string{"SECRET"}, Env: []string{"NO_PROXY=custom", "PATH=/x"}}, environ,
		func(k string) bool { return strings.HasPrefix(k, "AWF_SIM_") })
	want := []string{"COPILOT_API_URL=http://host.docker.internal:8790", "GH_HOST=acme.ghe.com", "GITHUB_SERVER_URL=https://acme.ghe.com",
		"HOME=/home/runner", "HTTPS_PROXY=http://172.30.0.10:3128", "HTTP_PROXY=http://172.30.0.10:3128", "NO_COLOR=1", "NO_PROXY=custom",
		"PATH=/runner/bin:/usr/bin", "SQUID_PROXY_HOST=squid-proxy", "SQUID_PROXY_PORT=3128", "https_proxy=http://172.30.0.10:3128",
		"no_proxy=localhost,127.0.0.1,::1,0.0.0.0,172.30.0.10,172.30.0.20,host.docker.internal,172.30.0.1"}
	if !slices.Equal(env, want) {
		t.Errorf("AgentEnv =\n%s\nwant\n%s", strings.Join(env, "\n"), strings.Join(want, "\n"))
	}
	// Without --env-all nothing of the runner's comes in but PATH; GH_HOST follows the server.
	env = AgentEnv(Options{}, []string{"PATH=/p", "GH_HOST=x", "GITHUB_SERVER_URL=https://github.com"}, func(string) bool { return false })
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GH_HOST=") || strings.HasPrefix(kv, "GITHUB_") }) ||
		!slices.Contains(env, "NO_PROXY=localhost,127.0.0.1,::1,0.0.0.0,172.30.0.10,172.30.0.20") {
		t.Errorf("no --env-all, no host access: %q", env)
	}
}

func TestIPTables(t *testing.T) {
	t.Parallel()
	o := Options{HostAccess: true, AllowHostPorts: []string{"8790", "9000-9001"}}
	var rules []string
	for _, r := range AgentIPTables(o) {
		rules = append(rules, strings.Join(r, " "))
	}
	all := strings.Join(rules, "\n")
	for _, want := range []string{
		"-t nat -A OUTPUT -d 172.30.0.1 -j RETURN\n-A OUTPUT -p tcp -d 172.30.0.1 --dport 80 -j ACCEPT\n-A OUTPUT -p tcp -d 172.30.0.1 --dport 443 -j ACCEPT\n" +
			"-A OUTPUT -p tcp -d 172.30.0.1 --dport 8790 -j ACCEPT\n-A OUTPUT -p tcp -d 172.30.0.1 --dport 9000:9001 -j ACCEPT",
		"-t nat -A OUTPUT -p tcp --dport 443 -j DNAT --to-destination 172.30.0.10:3128",
		"-t nat -A OUTPUT -p tcp --dport 8790 -j DNAT --to-destination 172.30.0.10:3128",
		"-A OUTPUT -p tcp -j DROP\n-A OUTPUT -p udp -j DROP",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("agent rules lack\n%s\n--- rules ---\n%s", want, all)
		}
	}
	if strings.Contains(all, "172.30.0.1 --dport") && !o.HostAccess {
		t.Error("gateway rules without host access")
	}
	for _, r := range AgentIPTables(Options{}) {
		if slices.Contains(r, gatewayIP) {
			t.Errorf("without host access the gateway gets a rule: %q", r)
		}
	}
	host := HostIPTables(o, "awf-net")
	if last := strings.Join(host[len(host)-1], " "); last != "-I FORWARD 1 -i awf-net -j FW_WRAPPER" {
		t.Errorf("host rules end with %q", last)
	}
}

func TestPlanWritesEveryFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"GITHUB_SERVER_URL": "https://acme.ghe.com", "AWF_SIM_SQUID_DIR": "/sq", "AWF_SIM_SQUID_HOSTS": "/sq/hosts"}
	err := plan(dir, strings.Fields("--enable-host-access --allow-host-ports 8790 --allow-domains host.docker.internal --block-domains api.acme.ghe.com --env-all -- copilot -p hi"),
		func(k string) string { return env[k] }, []string{"PATH=/usr/bin", "AWF_SIM_SQUID_DIR=/sq", "COPILOT_API_URL=http://host.docker.internal:8790"})
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read("agent.argv"); got != "copilot\x00-p\x00hi\x00" {
		t.Errorf("agent.argv = %q", got)
	}
	if got := read("allowed-domains"); got != "host.docker.internal\nacme.ghe.com\napi.acme.ghe.com\ncopilot-api.acme.ghe.com\ncopilot-telemetry-service.acme.ghe.com\n" {
		t.Errorf("allowed-domains = %q", got)
	}
	if got := read("host-ports"); got != "80\n443\n8790\n" {
		t.Errorf("host-ports = %q", got)
	}
	if e := read("agent.env"); strings.Contains(e, "AWF_SIM_") || !strings.Contains(e, "\x00COPILOT_API_URL=http://host.docker.internal:8790\x00") && !strings.HasPrefix(e, "COPILOT_API_URL=") {
		t.Errorf("agent.env = %q", e)
	}
	if c := read("squid.conf"); !strings.Contains(c, "pid_filename /sq/squid.pid") || !strings.Contains(c, "acl blocked_domains dstdomain .api.acme.ghe.com") {
		t.Errorf("squid.conf:\n%s", c)
	}
	if err := plan(dir, []string{"--bogus", "--", "x"}, func(string) string { return "" }, nil); err == nil {
		t.Error("plan accepted an unknown awf flag")
	}
}
