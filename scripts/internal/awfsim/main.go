// Command awfsim is the part of scripts/e2e-awf.sh's `awf` stand-in that reads awf's command line
// the way awf (github/gh-aw-firewall, iptables mode, v0.27.31; its rules unchanged to v0.28.4)
// does and writes what awf would configure, for the script to apply with real Squid, iptables and
// network namespaces:
//
//	awfsim plan DIR -- AWF_ARGS...
//
// DIR/squid.conf         Squid's configuration (allowlist with awf's matching and overlap rules,
//
//	                       blocklist first, host ports, raw-IP deny)
//	DIR/agent.env          the agent's environment, NUL-separated KEY=VALUE
//	DIR/agent.argv         the command after --, NUL-separated
//	DIR/agent-iptables     the agent's iptables rules, one argv per line (words without spaces)
//	DIR/host-iptables      awf's host-level rules for its network, the same way
//	DIR/allowed-domains    the final allowlist awf hands Squid, one per line
//	DIR/host-ports         the host ports the agent may reach, one per line
//
// The environment is the runner's as awf sees it through `sudo -E`. Variables starting AWF_SIM_
// are the harness's and stay out of the agent. AWF_SIM_SQUID_DIR and AWF_SIM_SQUID_HOSTS name
// Squid's state directory and hosts file.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if len(os.Args) < 4 || os.Args[1] != "plan" || os.Args[3] != "--" {
		fmt.Fprintln(os.Stderr, "usage: awfsim plan DIR -- AWF_ARGS...")
		os.Exit(2)
	}
	if err := plan(os.Args[2], os.Args[4:], os.Getenv, os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func plan(dir string, args []string, getenv func(string) string, environ []string) error {
	o, err := Parse(args)
	if err != nil {
		return err
	}
	allowed := AllowedDomains(o, getenv)
	nul := func(items []string) string { return strings.Join(items, "\x00") + "\x00" }
	lines := func(rules [][]string) string {
		var b strings.Builder
		for _, r := range rules {
			b.WriteString(strings.Join(r, " ") + "\n")
		}
		return b.String()
	}
	ports := []string{}
	if o.HostAccess {
		ports = append([]string{"80", "443"}, o.AllowHostPorts...)
	}
	files := map[string]string{
		"squid.conf":      SquidConfig(o, allowed, SquidFiles{Dir: getenv("AWF_SIM_SQUID_DIR"), HostsFile: getenv("AWF_SIM_SQUID_HOSTS")}),
		"agent.env":       nul(AgentEnv(o, environ, func(k string) bool { return strings.HasPrefix(k, "AWF_SIM_") })),
		"agent.argv":      nul(o.Command),
		"agent-iptables":  lines(AgentIPTables(o)),
		"host-iptables":   lines(HostIPTables(o, "awf-net")),
		"allowed-domains": strings.Join(allowed, "\n") + "\n",
		"host-ports":      strings.Join(ports, "\n") + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
