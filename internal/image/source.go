package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Source is a Debian archive taken from apt's configuration.
type Source struct {
	URI     string // the archive's URL
	Suite   string // a release suite such as a codename (no -updates, -security)
	Keyring string // Signed-By, when it names a keyring file
}

// aptSourceFiles lists apt's source files: the one-line sources.list and the
// files in sources.list.d (deb822 *.sources and one-line *.list).
func aptSourceFiles(root string) []string {
	files := []string{filepath.Join(root, "etc/apt/sources.list")}
	more, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*"))
	slices.Sort(more)
	return append(files, more...)
}

// DebianSource finds, in this host's apt configuration, the first enabled
// binary ("deb") source with the main component of a release suite. The
// builder bootstraps from it, so the image's packages come from where this
// host's own packages come from.
func DebianSource() (Source, error) { return debianSourceIn("/") }

func debianSourceIn(root string) (Source, error) {
	var all []Source
	for _, f := range aptSourceFiles(root) {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(f, ".sources"):
			all = append(all, parseDeb822(data)...)
		case strings.HasSuffix(f, ".list"):
			all = append(all, parseOneLine(data)...)
		}
	}
	if len(all) == 0 {
		return Source{}, errors.New("image: no Debian archive with a release suite and the main component " +
			"in apt's sources (/etc/apt/sources.list, /etc/apt/sources.list.d); pass --mirror and --suite")
	}
	return all[0], nil
}

// releaseSuite accepts a codename or release name, not an update or
// security suite, which holds only part of the archive.
var releaseSuite = regexp.MustCompile(`^[a-z]+$`)

// parseDeb822 reads the deb822 format: stanzas of "Field: value" lines.
func parseDeb822(data []byte) []Source {
	var out []Source
	for _, stanza := range bytes.Split(data, []byte("\n\n")) {
		fields := map[string]string{}
		var last string
		for line := range strings.Lines(string(stanza)) {
			line = strings.TrimRight(line, "\r\n")
			switch {
			case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
			case (line[0] == ' ' || line[0] == '\t') && last != "":
				fields[last] += " " + strings.TrimSpace(line)
			default:
				k, v, ok := strings.Cut(line, ":")
				if ok {
					last = strings.ToLower(strings.TrimSpace(k))
					fields[last] = strings.TrimSpace(v)
				}
			}
		}
		if strings.EqualFold(fields["enabled"], "no") || !slices.Contains(strings.Fields(fields["types"]), "deb") ||
			!slices.Contains(strings.Fields(fields["components"]), "main") {
			continue
		}
		uris := strings.Fields(fields["uris"])
		if len(uris) == 0 {
			continue
		}
		for _, suite := range strings.Fields(fields["suites"]) {
			if releaseSuite.MatchString(suite) {
				out = append(out, Source{URI: uris[0], Suite: suite, Keyring: keyringFile(fields["signed-by"])})
			}
		}
	}
	return out
}

// parseOneLine reads "deb [options] uri suite component..." lines.
func parseOneLine(data []byte) []Source {
	var out []Source
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		var opts string
		if i := strings.Index(line, "["); i >= 0 {
			if j := strings.Index(line[i:], "]"); j >= 0 {
				opts = line[i+1 : i+j]
				line = line[:i] + line[i+j+1:]
			}
		}
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "deb" || !releaseSuite.MatchString(f[2]) || !slices.Contains(f[3:], "main") {
			continue
		}
		var keyring string
		for _, o := range strings.Fields(opts) {
			if v, ok := strings.CutPrefix(o, "signed-by="); ok {
				keyring = keyringFile(v)
			}
		}
		out = append(out, Source{URI: f[1], Suite: f[2], Keyring: keyring})
	}
	return out
}

// keyringFile returns v when it names a keyring file (Signed-By may also
// hold an inline key, which debootstrap cannot take).
func keyringFile(v string) string {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "/") && !strings.ContainsAny(v, " \n") {
		return v
	}
	return ""
}

var distributionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// PyprojectDependencies returns the distribution names in the
// [project].dependencies array of a pyproject.toml, without versions,
// extras or markers. It reads only that array, written as a TOML array of
// strings, which is all runtime/pyproject.toml needs.
func PyprojectDependencies(pyproject []byte) ([]string, error) {
	var section string
	var inDeps bool
	var names []string
	for line := range strings.Lines(string(pyproject)) {
		line = strings.TrimSpace(line)
		if !inDeps {
			if strings.HasPrefix(line, "[") && !strings.Contains(line, "=") {
				section = strings.Trim(line, "[] ")
				continue
			}
			rest, ok := strings.CutPrefix(line, "dependencies")
			if section != "project" || !ok {
				continue
			}
			rest, ok = strings.CutPrefix(strings.TrimSpace(rest), "=")
			if !ok {
				continue
			}
			line, inDeps = strings.TrimSpace(rest), true
			line, ok = strings.CutPrefix(line, "[")
			if !ok {
				return nil, errors.New("pyproject.toml: [project].dependencies is not an array")
			}
		}
		line, _, _ = strings.Cut(line, "#")
		end := strings.Contains(line, "]")
		line, _, _ = strings.Cut(line, "]")
		for _, item := range strings.Split(line, ",") {
			item = strings.Trim(strings.TrimSpace(item), `"'`)
			if item == "" {
				continue
			}
			name := item
			if i := strings.IndexAny(item, "<>=!~;[ @"); i >= 0 {
				name = item[:i]
			}
			if !distributionName.MatchString(name) {
				return nil, fmt.Errorf("pyproject.toml: dependency %q has no valid name", item)
			}
			names = append(names, name)
		}
		if end {
			return names, nil
		}
	}
	if inDeps {
		return nil, errors.New("pyproject.toml: [project].dependencies is not closed")
	}
	return nil, errors.New("pyproject.toml: no [project].dependencies")
}
