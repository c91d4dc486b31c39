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

	var acl, access []string
	// Blocked domains (awf strips a scheme and takes no protocol split for them).
	var blockPlain []entry
	var blockPat []pattern
	if len(o.BlockDomains) > 0 {
		var norm []string
		for _, d := range o.BlockDomains {
			d, _ = splitProtocol(d)
			norm = append(norm, d)
		}
		for _, d := range norm {
			if strings.Contains(d, "*") {
				blockPat = append(blockPat, pattern{regex: wildcardToRegex(d)})
			} else {
				blockPlain = append(blockPlain, entry{domain: d})
			}
		}
	}
	for _, e := range blockPlain {
		acl = append(acl, "acl blocked_domains dstdomain ."+strings.TrimPrefix(e.domain, "."))
	}
	for _, p := range blockPat {
		acl = append(acl, "acl blocked_domains_regex dstdom_regex -i "+p.regex)
	}
	if len(blockPlain) > 0 {
		access = append(access, "http_access deny blocked_domains")
	}
	if len(blockPat) > 0 {
		access = append(access, "http_access deny blocked_domains_regex")
	}
	for _, d := range bothD {
		acl = append(acl, "acl allowed_domains dstdomain "+d)
	}
	for _, p := range bothP {
		acl = append(acl, "acl allowed_domains_regex dstdom_regex -i "+p)
	}
	for _, d := range httpD {
		acl = append(acl, "acl allowed_http_only dstdomain "+d)
	}
	for _, p := range httpP {
		acl = append(acl, "acl allowed_http_only_regex dstdom_regex -i "+p)
	}
	for _, d := range httpsD {
		acl = append(acl, "acl allowed_https_only dstdomain "+d)
	}
	for _, p := range httpsP {
		acl = append(acl, "acl allowed_https_only_regex dstdom_regex -i "+p)
	}
	if len(httpD) > 0 {
		access = append(access, "http_access allow !CONNECT allowed_http_only")
	}
	if len(httpP) > 0 {
		access = append(access, "http_access allow !CONNECT allowed_http_only_regex")
	}
	if len(httpsD) > 0 {
		access = append(access, "http_access allow CONNECT allowed_https_only")
	}
	if len(httpsP) > 0 {
		access = append(access, "http_access allow CONNECT allowed_https_only_regex")
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
