package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/copilot-route/copilot-route/internal/actions"
	"github.com/copilot-route/copilot-route/internal/daemon"
	"github.com/copilot-route/copilot-route/internal/proxy"
	"github.com/copilot-route/copilot-route/internal/summary"
)

// runStop reads the proxy's figures, stops it and appends the traffic report to the job summary.
// It runs with if: always(), so every "nothing to do" case (no proxy started, already gone) is a
// success: failing here would only hide the real failure of the job.
func runStop(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) int {
	a := actions.New(env.Getenv, stdout)
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	stateFile := fs.String("state-file", filepath.Join(stateDir(env), "proxy.json"), "the state file start wrote")
	// Longer than serve's own shutdown grace, so open streams may finish before SIGKILL.
	grace := fs.Duration("grace", proxy.DefaultShutdownGrace+2*time.Second, "how long to wait after SIGTERM before SIGKILL")
	if code, ok := parseFlags(fs, args, stderr, "Reads the proxy's traffic figures, stops it (SIGTERM, then SIGKILL after --grace) and appends the\n"+
		"traffic report to the job summary. With no proxy to stop it succeeds: run it with if: always()."); !ok {
		return code
	}

	st, err := readState(*stateFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		fmt.Fprintln(stderr, "copilot-route: no proxy was started in this job; nothing to stop")
		return commitSummary(a, stderr, "## ➖ copilot-route: traffic\n\nNo proxy was started in this job.\n\n", nil)
	case err != nil:
		warn(a, stderr, "copilot-route stop", err.Error()+"; nothing was stopped")
		return 0
	}
	if st.ClientToken != "" && inActions(a) {
		a.Mask(st.ClientToken)
	}

	stats, statsErr := fetchStats(ctx, st)
	res, stopErr := daemon.Stop(ctx, st.handle(), *grace)
	if stopErr != nil {
		warn(a, stderr, "copilot-route stop", fmt.Sprintf("stopping the proxy (pid %d): %v", st.PID, stopErr))
	}
	if res == daemon.AlreadyGone {
		warn(a, stderr, "copilot-route stop", fmt.Sprintf("the proxy (pid %d) had exited before stop: agents after that point got no answer; its log is %s", st.PID, st.LogFile))
	}
	if res == daemon.NotOurs {
		warn(a, stderr, "copilot-route stop", fmt.Sprintf("pid %d is no longer the proxy (it exited and the pid was reused); left it alone", st.PID))
	}
	if res != daemon.StillRunning {
		_ = os.Remove(*stateFile)
	}
	fmt.Fprintf(stderr, "copilot-route: proxy pid %d: %s\n", st.PID, res)
	if stats != nil {
		for _, an := range summary.TrafficAnnotations(*stats) {
			if an.Level == "error" && inActions(a) {
				a.Error(an.Title, an.Message)
			} else {
				warn(a, stderr, an.Title, an.Message)
			}
		}
	}
	var outputs map[string]string
	if stats != nil {
		outputs = usageOutputs(stats.Usage)
		fmt.Fprintf(stderr, "copilot-route: %s inference requests, %s premium requests, %s input and %s output tokens\n",
			outputs["requests"], outputs["premium-requests"], outputs["input-tokens"], outputs["output-tokens"])
	}
	return commitSummary(a, stderr, trafficMarkdown(st, stats, statsErr, res), outputs)
}

// fetchStats asks the running proxy for its figures: on its control socket, which needs no token
// and which the agent's TCP connections cannot starve, else (a state from an older start, or a
// socket that does not answer) on its TCP listener with the client token.
func fetchStats(ctx context.Context, st proxyState) (*proxy.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var sockErr error
	if st.ControlSocket != "" {
		s, err := getStats(ctx, controlClient(st.ControlSocket), controlBase, "")
		if err == nil {
			return s, nil
		}
		sockErr = fmt.Errorf("on its control socket: %w", err)
	}
	if st.URL == "" {
		return nil, errors.Join(sockErr, errors.New("the state file has no proxy URL"))
	}
	s, err := getStats(ctx, loopbackClient, st.URL, st.ClientToken)
	if err != nil {
		return nil, errors.Join(sockErr, fmt.Errorf("on %s: %w", st.URL, err))
	}
	return s, nil
}

// getStats reads and decodes the proxy's figures from base; token, when set, is the client token.
func getStats(ctx context.Context, client *http.Client, base, token string) (*proxy.Stats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+proxy.StatsPath, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the proxy did not answer (%s)", redactErr(err, token))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the proxy answered %s to the stats request", resp.Status)
	}
	var s proxy.Stats
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&s); err != nil {
		return nil, fmt.Errorf("the proxy's stats are not JSON: %v", err)
	}
	return &s, nil
}

// redactErr keeps a secret out of an error text (url errors quote the URL, never headers, but
// this is cheap insurance).
func redactErr(err error, secret string) string {
	msg := err.Error()
	if secret != "" {
		msg = strings.ReplaceAll(msg, secret, "***")
	}
	return msg
}

// commitSummary appends md to the job summary and writes the outputs (stop's usage figures; none
// when the proxy's figures could not be read, so a later step gating on them cannot read a 0 that
// was never measured).
func commitSummary(a *actions.Actions, stderr io.Writer, md string, outputs map[string]string) int {
	if a.Getenv(actions.FileSummary) == "" && !a.InStep() {
		fmt.Fprint(stderr, md)
		return 0
	}
	b := a.Stage()
	for _, name := range stopOutputs {
		if v, ok := outputs[name]; ok && a.InStep() {
			b.Output(name, v)
		}
	}
	if a.Getenv(actions.FileSummary) != "" {
		b.Summary(md)
	} else {
		fmt.Fprint(stderr, md)
	}
	if err := b.Commit(); err != nil {
		warn(a, stderr, "copilot-route stop", "write the job summary: "+err.Error())
	}
	return 0
}

// trafficMarkdown is the traffic report (rendered by the summary package) and a line on the
// proxy's own life: where it ran, how fast it was ready, how it stopped.
func trafficMarkdown(st proxyState, s *proxy.Stats, statsErr error, res daemon.StopResult) string {
	var b strings.Builder
	if s != nil {
		b.WriteString(summary.Traffic(*s))
	} else {
		b.WriteString("## ⚠️ copilot-route: traffic\n\n")
		fmt.Fprintf(&b, "No traffic figures: %s. The proxy's log is `%s`.\n\n", mdCell(statsErr.Error()), mdCell(st.LogFile))
	}
	fmt.Fprintf(&b, "<sub>Proxy pid %d at `%s` (agents used `%s`), ready %.0f ms after start; at stop: %s.</sub>\n\n",
		st.PID, mdCell(st.URL), mdCell(st.ProxyURL), st.ReadyMS, res)
	return b.String()
}

// mdCell keeps a value on one table row: no line breaks, no column separators.
func mdCell(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ", "|", "\\|", "`", "'").Replace(s)
}

// warn is a warning annotation in Actions and a line on stderr elsewhere.
func warn(a *actions.Actions, stderr io.Writer, title, msg string) {
	if inActions(a) {
		a.Warning(title, msg)
		return
	}
	fmt.Fprintf(stderr, "%s: warning: %s\n", title, msg)
}
