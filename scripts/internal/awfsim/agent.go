package main

import (
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// excludedEnv is what awf's --env-all never copies into the agent (src/services/agent-environment/
// excluded-vars.ts and upstream-proxy.ts's PROXY_ENV_VARS, v0.27.31, with the api-proxy off).
var excludedEnv = append([]string{
	"PATH", "PWD", "OLDPWD", "SHLVL", "_", "SUDO_COMMAND", "SUDO_USER", "SUDO_UID", "SUDO_GID",
	"ACTIONS_RUNTIME_TOKEN", "ACTIONS_RESULTS_URL",
	"AWF_PREFLIGHT_BINARY", "AWF_STAGED_RUNNER_BINARY_NAME", "AWF_GEMINI_ENABLED", "MCP_GATEWAY_HOST_DOMAIN",
}, proxyEnv...)

// proxyEnv are the proxy variables: never copied by --env-all, but an explicit --env may set them.
var proxyEnv = []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
	"FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy"}

// AgentEnv is the agent container's environment as awf builds it (environment-builder.ts): its
// proxy variables, NO_PROXY with host.docker.internal and the gateway when host access is on
// (proxy-environment.ts), the runner's environment with --env-all minus the exclusions, GH_HOST
// from GITHUB_SERVER_URL (github-actions-environment.ts), then --env. PATH is the runner's: awf
// runs the agent in a chroot of the runner's file system with the runner's PATH (AWF_HOST_PATH).
// Variables named in skip (the simulator's own plumbing) are left out.
func AgentEnv(o Options, environ []string, skip func(string) bool) []string {
	env := map[string]string{}
	proxy := "http://" + squidIP + ":" + strconv.Itoa(squidPort)
	env["HTTP_PROXY"], env["HTTPS_PROXY"], env["https_proxy"] = proxy, proxy, proxy
	env["SQUID_PROXY_HOST"], env["SQUID_PROXY_PORT"] = "squid-proxy", strconv.Itoa(squidPort)
	env["NO_COLOR"] = "1"
	noProxy := "localhost,127.0.0.1,::1,0.0.0.0," + squidIP + "," + agentIP
	if o.HostAccess {
		noProxy += ",host.docker.internal," + gatewayIP
	}
	env["NO_PROXY"], env["no_proxy"] = noProxy, noProxy

	host := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			host[k] = v
		}
	}
	if o.EnvAll {
		for k, v := range host {
			if _, set := env[k]; !set && !slices.Contains(excludedEnv, k) && !slices.Contains(o.ExcludeEnv, k) && !skip(k) {
				env[k] = v
			}
		}
	}
	env["PATH"] = host["PATH"]
	if gh := ghHost(host["GITHUB_SERVER_URL"]); gh != "" {
		env["GH_HOST"] = gh
	} else {
		delete(env, "GH_HOST")
	}
	for _, kv := range o.Env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && (!slices.Contains(excludedEnv, k) || slices.Contains(proxyEnv, k)) {
			env[k] = v
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// ghHost is awf's extractGhHostFromServerUrl: the server's host, none for github.com.
func ghHost(server string) string {
	u, err := url.Parse(server)
	if err != nil || u.Hostname() == "" || u.Hostname() == "github.com" {
		return ""
	}
	return u.Hostname()
}

// AgentIPTables are the agent's rules as containers/agent/setup-iptables.sh (v0.27.31, unchanged
// to v0.28.4) sets them in iptables mode, for a network with no DNS server (names come from the
// agent's /etc/hosts here): loopback, self and Squid bypass the redirect; with host access the
// gateway bypasses it and is reachable on 80, 443 and --allow-host-ports only; TCP to dangerous
// ports returns from NAT (to be dropped); TCP 80, 443 and the allowed host ports go to Squid;
// every other TCP and UDP packet is dropped. Each rule is one iptables argv.
func AgentIPTables(o Options) [][]string {
	var r [][]string
	add := func(args ...string) { r = append(r, args) }
	add("-t", "nat", "-A", "OUTPUT", "-o", "lo", "-j", "RETURN")
	add("-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.0/8", "-j", "RETURN")
	add("-t", "nat", "-A", "OUTPUT", "-d", "0.0.0.0", "-j", "RETURN")
	add("-t", "nat", "-A", "OUTPUT", "-d", agentIP, "-j", "RETURN")
	add("-A", "OUTPUT", "-p", "tcp", "-d", agentIP, "-j", "ACCEPT")
	add("-t", "nat", "-A", "OUTPUT", "-d", squidIP, "-j", "RETURN")
	if o.HostAccess {
		add("-t", "nat", "-A", "OUTPUT", "-d", gatewayIP, "-j", "RETURN")
		for _, p := range append([]string{"80", "443"}, o.AllowHostPorts...) {
			add("-A", "OUTPUT", "-p", "tcp", "-d", gatewayIP, "--dport", strings.ReplaceAll(p, "-", ":"), "-j", "ACCEPT")
		}
	}
	for _, p := range []string{"22", "23", "25", "110", "143", "445", "1433", "1521", "3306", "3389", "5432", "6379", "27017", "27018", "28017"} {
		add("-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", p, "-j", "RETURN")
	}
	squid := squidIP + ":" + strconv.Itoa(squidPort)
	for _, p := range append([]string{"80", "443"}, o.AllowHostPorts...) {
		add("-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", strings.ReplaceAll(p, "-", ":"), "-j", "DNAT", "--to-destination", squid)
	}
	add("-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT")
	add("-A", "OUTPUT", "-p", "tcp", "-d", squidIP, "-j", "ACCEPT")
	add("-A", "OUTPUT", "-p", "tcp", "-j", "DROP")
	add("-A", "OUTPUT", "-p", "udp", "-j", "DROP")
	return r
}

// HostIPTables are awf's host-level rules for its network (src/host-iptables-rules.ts, the
// FW_WRAPPER chain it hooks into DOCKER-USER), as a FORWARD chain here: Squid may go anywhere,
// replies pass, Squid's port and (with host access) the gateway's allowed ports are open, and
// everything else from the network is dropped.
func HostIPTables(o Options, bridge string) [][]string {
	var r [][]string
	add := func(args ...string) { r = append(r, args) }
	add("-N", "FW_WRAPPER")
	add("-A", "FW_WRAPPER", "-s", squidIP, "-j", "ACCEPT")
	add("-A", "FW_WRAPPER", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
	add("-A", "FW_WRAPPER", "-p", "tcp", "-d", squidIP, "--dport", strconv.Itoa(squidPort), "-j", "ACCEPT")
	if o.HostAccess {
		for _, p := range append([]string{"80", "443"}, o.AllowHostPorts...) {
			add("-A", "FW_WRAPPER", "-p", "tcp", "-d", gatewayIP, "--dport", strings.ReplaceAll(p, "-", ":"), "-j", "ACCEPT")
		}
	}
	add("-A", "FW_WRAPPER", "-j", "DROP")
	add("-I", "FORWARD", "1", "-i", bridge, "-j", "FW_WRAPPER")
	return r
}
