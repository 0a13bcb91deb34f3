package main

// `bpagents completion bash|zsh`: completion scripts generated from the
// command table and each command's own FlagSet, so they cannot drift from
// the flags the commands really take.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// flagInfo is one flag as completion needs it.
type flagInfo struct {
	Name  string
	Usage string
	Bool  bool
}

// commandFlags runs each command with -h, capturing its FlagSet instead of
// printing help. `agent` contributes the flags of `agent create` too.
func commandFlags(ctx context.Context) map[string][]flagInfo {
	out := map[string][]flagInfo{}
	seen := map[string]map[string]bool{}
	add := func(name string, fs *flag.FlagSet) {
		if seen[name] == nil {
			seen[name] = map[string]bool{}
		}
		fs.VisitAll(func(f *flag.Flag) {
			if seen[name][f.Name] {
				return
			}
			seen[name][f.Name] = true
			b, ok := f.Value.(interface{ IsBoolFlag() bool })
			out[name] = append(out[name], flagInfo{Name: f.Name, Usage: f.Usage, Bool: ok && b.IsBoolFlag()})
		})
	}
	for _, c := range commands {
		var got *flag.FlagSet
		usageCapture = func(fs *flag.FlagSet) { got = fs }
		args := [][]string{{"-h"}}
		if c.Name == "agent" {
			args = append(args, []string{"create", "-h"})
		}
		for _, a := range args {
			got = nil
			if c.Name != "completion" && c.Name != "version" && c.Name != "image" && c.Name != "simulate" {
				_ = run(ctx, c.Name, a)
			}
			if got != nil {
				add(c.Name, got)
			}
		}
		for _, f := range c.Flags {
			if !seen[c.Name][f] {
				if seen[c.Name] == nil {
					seen[c.Name] = map[string]bool{}
				}
				seen[c.Name][f] = true
				out[c.Name] = append(out[c.Name], flagInfo{Name: f})
			}
		}
	}
	usageCapture = nil
	for _, list := range out {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	return out
}

func cmdCompletion(ctx context.Context, args []string) error {
	return runCompletion(ctx, args, os.Stdout)
}

func runCompletion(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		printHelp(out, "completion", nil)
		return nil
	}
	if len(args) != 1 {
		return errors.New("usage: bpagents completion bash|zsh")
	}
	flags := commandFlags(ctx)
	switch args[0] {
	case "bash":
		return writeBash(out, flags)
	case "zsh":
		return writeZsh(out, flags)
	}
	return fmt.Errorf("completion: unknown shell %q (known: bash, zsh)", args[0])
}

// pathFlags take a file or directory.
var pathFlags = map[string]bool{"home": true, "config": true, "out": true, "from": true, "workdir": true}

func writeBash(w io.Writer, flags map[string][]flagInfo) error {
	var b strings.Builder
	b.WriteString("# bash completion for bpagents; load it with: source <(bpagents completion bash)\n")
	b.WriteString("_bpagents() {\n\tlocal cur prev cmd words\n")
	b.WriteString("\tcur=\"${COMP_WORDS[COMP_CWORD]}\"\n\tprev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n")
	fmt.Fprintf(&b, "\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n\t\tCOMPREPLY=( $(compgen -W %q -- \"$cur\") )\n\t\treturn\n\tfi\n",
		strings.Join(commandNames(), " "))
	b.WriteString("\tcmd=\"${COMP_WORDS[1]}\"\n\tcase \"$prev\" in\n")
	var paths []string
	for f := range pathFlags {
		paths = append(paths, "--"+f)
	}
	sort.Strings(paths)
	fmt.Fprintf(&b, "\t%s) COMPREPLY=( $(compgen -f -- \"$cur\") ); return ;;\n", strings.Join(paths, "|"))
	b.WriteString("\tesac\n\tcase \"$cmd:$prev\" in\n")
	for _, c := range commands {
		keys := make([]string, 0, len(c.Values))
		for k := range c.Values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "\t%s:--%s) COMPREPLY=( $(compgen -W %q -- \"$cur\") ); return ;;\n", c.Name, k, strings.Join(c.Values[k], " "))
		}
	}
	b.WriteString("\tesac\n\tcase \"$cmd\" in\n")
	b.WriteString("\tcompletion) words=\"bash zsh\" ;;\n\timage) words=\"build\" ;;\n")
	for _, c := range commands {
		var fl []string
		for _, f := range flags[c.Name] {
			fl = append(fl, "--"+f.Name)
		}
		if c.Name == "agent" {
			fl = append([]string{"create"}, fl...)
		}
		if len(fl) > 0 && c.Name != "image" {
			fmt.Fprintf(&b, "\t%s) words=%q ;;\n", c.Name, strings.Join(fl, " "))
		}
	}
	b.WriteString("\t*) words=\"\" ;;\n\tesac\n")
	b.WriteString("\tCOMPREPLY=( $(compgen -W \"$words\" -- \"$cur\") )\n}\n")
	b.WriteString("complete -o default -F _bpagents bpagents\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// zshQuote escapes text for a zsh _arguments spec inside single quotes.
func zshQuote(s string) string {
	s = strings.NewReplacer("'", "'\\''", "[", "\\[", "]", "\\]", ":", "\\:").Replace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func writeZsh(w io.Writer, flags map[string][]flagInfo) error {
	var b strings.Builder
	b.WriteString("#compdef bpagents\n# zsh completion for bpagents; load it with: source <(bpagents completion zsh)\n")
	b.WriteString("# or save it as _bpagents in a directory of $fpath.\n\n_bpagents() {\n\tlocal -a cmds\n\tcmds=(\n")
	for _, c := range commands {
		about := c.About
		if i := strings.IndexAny(about, ".\n"); i >= 0 {
			about = about[:i]
		}
		fmt.Fprintf(&b, "\t\t'%s:%s'\n", c.Name, zshQuote(about))
	}
	b.WriteString("\t)\n\tif (( CURRENT == 2 )); then\n\t\t_describe 'command' cmds\n\t\treturn\n\tfi\n")
	b.WriteString("\tlocal cmd=${words[2]}\n\tcurcontext=\"${curcontext%:*:*}:bpagents-$cmd:\"\n\tcase $cmd in\n")
	b.WriteString("\tcompletion) _values 'shell' bash zsh ;;\n\timage) _values 'action' build ;;\n")
	for _, c := range commands {
		if c.Name == "image" || c.Name == "completion" || len(flags[c.Name]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\t%s)\n\t\t_arguments -s \\\n", c.Name)
		for _, f := range flags[c.Name] {
			spec := "'--" + f.Name + "[" + zshQuote(f.Usage) + "]"
			switch {
			case f.Bool:
			case c.Values[f.Name] != nil:
				spec += ":" + f.Name + ":(" + strings.Join(c.Values[f.Name], " ") + ")"
			case pathFlags[f.Name]:
				spec += ":" + f.Name + ":_files"
			default:
				spec += ":" + f.Name + ": "
			}
			b.WriteString("\t\t\t" + spec + "' \\\n")
		}
		b.WriteString("\t\t\t'*::argument: '\n\t\t;;\n")
	}
	b.WriteString("\tesac\n}\n\n")
	b.WriteString("if [ \"$funcstack[1]\" = \"_bpagents\" ]; then\n\t_bpagents \"$@\"\nelse\n\tcompdef _bpagents bpagents\nfi\n")
	_, err := io.WriteString(w, b.String())
	return err
}
