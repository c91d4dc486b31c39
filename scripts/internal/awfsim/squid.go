package main

import (
	"fmt"
	"strings"
)

// SquidFiles are where the simulated Squid keeps its state (awf's container has its own paths).
type SquidFiles struct {
	Dir       string // pid file, logs, cache dir: owned by Squid's user
	HostsFile string // the names Squid resolves (awf: Docker DNS, plus host.docker.internal)
}

// SquidConfig is awf's generateSquidConfig (src/squid/config-generator.ts, access-rules.ts,
// acl-generator.ts, config-sections.ts) for the options the simulator supports, in awf's order:
// blocked domains first, then protocol-restricted entries, then the deny of everything not
// allowed; unsafe ports and raw IP destinations are refused before any of it. Only the file
// locations, the name resolution and the memory size differ, because Squid runs in a network
// namespace on this machine instead of its container.
func SquidConfig(o Options, allowed []string, f SquidFiles) string {
	plain, patterns := parseDomains(allowed)
	byProto := func(p protocol) (ds []string, ps []string) {
		for _, e := range plain {
			if e.proto == p {
				ds = append(ds, "."+strings.TrimPrefix(e.domain, "."))
			}
		}
		for _, x := range patterns {
			if x.proto == p {
				ps = append(ps, x.regex)
			}
		}
		return ds, ps
	}
	bothD, bothP := byProto(protoBoth)
	httpD, httpP := byProto(protoHTTP)
	httpsD, httpsP := byProto(protoHTTPS)

	// Blocked domains (awf strips a scheme and splits no protocols for them).
	var blockD, blockP []string
	for _, d := range o.BlockDomains {
		d, _ = splitProtocol(d)
		if strings.Contains(d, "*") {
			blockP = append(blockP, wildcardToRegex(d))
		} else {
			blockD = append(blockD, "."+strings.TrimPrefix(d, "."))
		}
	}
	// In awf's order: the ACLs of each group, then the access rules of each group (the "both"
	// group has none of its own: the deny below covers it).
	groups := []struct {
		name, rule     string
		plain, regexes []string
	}{
		{"blocked_domains", "http_access deny ", blockD, blockP},
		{"allowed_domains", "", bothD, bothP},
		{"allowed_http_only", "http_access allow !CONNECT ", httpD, httpP},
		{"allowed_https_only", "http_access allow CONNECT ", httpsD, httpsP},
	}
	var acl, access []string
	for _, g := range groups {
		for _, d := range g.plain {
			acl = append(acl, "acl "+g.name+" dstdomain "+d)
		}
		for _, r := range g.regexes {
			acl = append(acl, "acl "+g.name+"_regex dstdom_regex -i "+r)
		}
	}
	for _, g := range groups {
		if g.rule != "" && len(g.plain) > 0 {
			access = append(access, g.rule+g.name)
		}
		if g.rule != "" && len(g.regexes) > 0 {
			access = append(access, g.rule+g.name+"_regex")
		}
	}
	deny := "http_access deny all"
	switch {
	case len(bothD) > 0 && len(bothP) > 0:
		deny = "http_access deny !allowed_domains !allowed_domains_regex"
	case len(bothD) > 0:
		deny = "http_access deny !allowed_domains"
	case len(bothP) > 0:
		deny = "http_access deny !allowed_domains_regex"
	}
	if len(acl) == 0 {
		acl = []string{"# No domains configured"}
	}

	ports := []string{"acl SSL_ports port 443", "acl Safe_ports port 80", "acl Safe_ports port 443"}
	if o.HostAccess {
		for _, p := range o.AllowHostPorts {
			ports = append(ports, "acl Safe_ports port "+p)
		}
	}

	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("# Squid configuration for egress traffic control, as awf generates it (scripts/internal/awfsim)")
	line("pinger_enable off")
	line("visible_hostname squid-proxy")
	line("pid_filename %s/squid.pid", f.Dir)
	line(`logformat firewall_detailed %%ts.%%03tu %%>a:%%>p %%{Host}>h %%<a:%%<p %%rv %%rm %%>Hs %%Ss:%%Sh %%ru "%%{User-Agent}>h"`)
	line("acl healthcheck_localhost src 127.0.0.1 ::1")
	line("access_log %s/access.log firewall_detailed !healthcheck_localhost", f.Dir)
	line("cache_log %s/cache.log", f.Dir)
	line("coredump_dir %s", f.Dir)
	line("cache deny all")
	line("%s", strings.Join(acl, "\n"))
	line("http_port %d", squidPort)
	line("acl localnet src 10.0.0.0/8")
	line("acl localnet src 172.16.0.0/12")
	line("acl localnet src 192.168.0.0/16")
	line("%s", strings.Join(ports, "\n"))
	line("acl CONNECT method CONNECT")
	line("http_access deny !Safe_ports")
	line("http_access deny CONNECT !Safe_ports")
	line(`acl dst_ipv4 dstdom_regex ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$`)
	line(`acl dst_ipv6 dstdom_regex ^\[?[0-9a-fA-F:]+\]?$`)
	line("http_access deny dst_ipv4")
	line("http_access deny dst_ipv6")
	if len(access) > 0 {
		line("%s", strings.Join(access, "\n"))
	}
	line("%s", deny)
	line("http_access allow localnet")
	line("http_access allow localhost")
	line("http_access deny all")
	// Names come from a hosts file here (awf's Squid asks Docker's DNS); no resolver is queried.
	line("hosts_file %s", f.HostsFile)
	line("dns_nameservers 127.0.0.1")
	line("forwarded_for delete")
	line("via off")
	line("cache_mem 8 MB")
	line("maximum_object_size 0 KB")
	line("read_timeout 30 minutes")
	line("connect_timeout 30 seconds")
	line("client_lifetime 8 hours")
	line("half_closed_clients on")
	line("shutdown_lifetime 0 seconds")
	return b.String()
}
