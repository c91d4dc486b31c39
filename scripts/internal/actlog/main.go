// Command actlog reads the JSON log of `act --json` (one object per line) for scripts/e2e-act.sh.
//
//	actlog summary FILE   the job summary: every step's GITHUB_STEP_SUMMARY content, in order
//	actlog text FILE      the log as text: one message per line
//	actlog scan FILE      exit 1 if a secret appears in any field of any record. Secrets are one
//	                      per line in $ACTLOG_SECRETS; the exceptions are what act keeps of the
//	                      workflow commands themselves: the argument of ::add-mask:: (the masking
//	                      request) and, for the values in $ACTLOG_OUTPUT_SECRETS only, the value
//	                      field of a set-output record (a step output is its value; the message
//	                      act prints for it shows ***, and GitHub prints no outputs at all)
//
// act reads each step's summary file after the step, logs its content with command=summary and
// empties the file for the next step, so its log is the only place the whole job summary exists.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "summary" && os.Args[1] != "text" && os.Args[1] != "scan") {
		fmt.Fprintln(os.Stderr, "usage: actlog summary|text|scan FILE")
		os.Exit(2)
	}
	lines := func(env string) []string {
		var out []string
		for _, s := range strings.Split(os.Getenv(env), "\n") {
			if s = strings.TrimSpace(s); len(s) >= 8 {
				out = append(out, s)
			}
		}
		return out
	}
	outputSecrets := lines("ACTLOG_OUTPUT_SECRETS")
	secrets := append(lines("ACTLOG_SECRETS"), outputSecrets...)
	if os.Args[1] == "scan" && len(secrets) == 0 {
		fmt.Fprintln(os.Stderr, "actlog scan: no secrets in ACTLOG_SECRETS")
		os.Exit(2)
	}
	leaks := 0
	var last struct {
		StepID  []string
		Content string
	}
	f, err := os.Open(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		var rec struct {
			Msg     string   `json:"msg"`
			Command string   `json:"command"`
			Content string   `json:"content"`
			StepID  []string `json:"stepID"`
		}
		if os.Args[1] == "scan" {
			var all map[string]any
			var setOutputArg string
			if json.Unmarshal(line, &all) == nil {
				switch all["command"] {
				case "add-mask":
					delete(all, "arg")
					delete(all, "raw")
				case "set-output":
					setOutputArg, _ = all["arg"].(string)
					delete(all, "arg")
				}
				line, _ = json.Marshal(all)
			}
			for _, s := range secrets {
				if strings.Contains(string(line), s) || (strings.Contains(setOutputArg, s) && !contains(outputSecrets, s)) {
					leaks++
					fmt.Fprintf(out, "line %d: %s\n", n, strings.ReplaceAll(string(line), s, "<SECRET>"))
				}
			}
			continue
		}
		if json.Unmarshal(line, &rec) != nil {
			if os.Args[1] == "text" {
				fmt.Fprintf(out, "%s\n", line) // act's own non-JSON lines (errors before logging starts)
			}
			continue
		}
		switch os.Args[1] {
		case "summary":
			if rec.Command == "summary" {
				// act reports the last sub-step's summary of a composite action again for the
				// composite step itself (the file is emptied only when the next step starts).
				outer := len(rec.StepID) == 1 && len(last.StepID) > 1 && last.StepID[0] == rec.StepID[0]
				dup := outer && last.Content == rec.Content
				last.StepID, last.Content = rec.StepID, rec.Content
				if dup {
					continue
				}
				out.WriteString(rec.Content)
				if !strings.HasSuffix(rec.Content, "\n") {
					out.WriteString("\n")
				}
			}
		case "text":
			fmt.Fprintln(out, strings.TrimRight(rec.Msg, "\n"))
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if leaks > 0 {
		out.Flush()
		os.Exit(1)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
