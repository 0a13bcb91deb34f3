package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/docker/docker/api/types/build"
	dimage "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/bpagents/bpagents"
	"github.com/bpagents/bpagents/internal/testutil"
)

func TestDebianSourceFromAptConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  Source
		fails bool
	}{
		{"deb822 takes the release suite, not updates or security", map[string]string{
			"etc/apt/sources.list.d/debian.sources": `Types: deb
# a comment
URIs: http://archive.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://archive.example/debian-security
Suites: bookworm-security
Components: main
`}, Source{URI: "http://archive.example/debian", Suite: "bookworm", Keyring: "/usr/share/keyrings/debian-archive-keyring.gpg"}, false},
		{"one-line format with options", map[string]string{
			"etc/apt/sources.list": "# comment\ndeb-src http://src.example/debian trixie main\n" +
				"deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian trixie main non-free\n",
		}, Source{URI: "http://one.example/debian", Suite: "trixie", Keyring: "/k.gpg"}, false},
		{"disabled and source-only entries are skipped", map[string]string{
			"etc/apt/sources.list.d/a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/\nSuites: bookworm\nComponents: main\n",
			"etc/apt/sources.list.d/b.sources": "Types: deb-src\nURIs: http://src.example/\nSuites: bookworm\nComponents: main\n",
			"etc/apt/sources.list.d/c.list":    "deb http://on.example/debian bookworm main\n",
		}, Source{URI: "http://on.example/debian", Suite: "bookworm"}, false},
		{"nothing usable", map[string]string{"etc/apt/sources.list": "deb http://x.example/ bookworm-updates main\n"}, Source{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(root, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := debianSourceIn(root)
			if (err != nil) != tt.fails || got != tt.want {
				t.Errorf("got %+v, %v; want %+v (fails %v)", got, err, tt.want, tt.fails)
			}
		})
	}
}

func TestPyprojectDependencies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		want      []string
		fails     bool
	}{
		{"multi-line", "[project]\nname = \"x\"\ndependencies = [\n  \"requests>=2.28\",  # http\n  'PyYAML[c] ~= 6.0 ; python_version > \"3\"',\n]\n", []string{"requests", "PyYAML"}, false},
		{"one line", "[project]\ndependencies = [\"a\", \"b==1\"]\n", []string{"a", "b"}, false},
		{"other sections ignored", "[tool.x]\ndependencies = [\"no\"]\n[project]\ndependencies = []\n", nil, false},
		{"missing", "[project]\nname = \"x\"\n", nil, true},
		{"bad name", "[project]\ndependencies = [\"-x\"]\n", nil, true},
		{"unclosed", "[project]\ndependencies = [\n\"a\",\n", nil, true},
	}
	for _, tt := range tests {
		got, err := PyprojectDependencies([]byte(tt.doc))
		if (err != nil) != tt.fails || !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, %v; want %v (fails %v)", tt.name, got, err, tt.want, tt.fails)
		}
	}
}

func TestRecipeOfTheRuntimeFiles(t *testing.T) {
	t.Parallel()
	rec, err := NewRecipe(bpagents.RunnerImage(), "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.Packages, []string{"python3", "python3-requests"}) {
		t.Errorf("packages %v, want python3 and python3-requests", rec.Packages)
	}
	again, _ := NewRecipe(bpagents.RunnerImage(), "bookworm")
	if again.Hash != rec.Hash || again.BaseHash != rec.BaseHash {
		t.Error("the same content gives different hashes")
	}
	other, _ := NewRecipe(bpagents.RunnerImage(), "trixie")
	if other.BaseHash == rec.BaseHash || other.Hash == rec.Hash {
		t.Error("another suite gives the same hashes")
	}
	files := fstest.MapFS{}
	for name, data := range rec.Files {
		files[name] = &fstest.MapFile{Data: data}
	}
	files["bp-agent-run"] = &fstest.MapFile{Data: append(slices.Clone(rec.Files["bp-agent-run"]), '\n')}
	changed, err := NewRecipe(files, "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	if changed.BaseHash != rec.BaseHash || changed.Hash == rec.Hash {
		t.Error("changing the runner must change the image hash only")
	}
	delete(files, "entrypoint.py")
	if _, err := NewRecipe(files, "bookworm"); err == nil {
		t.Error("a recipe without entrypoint.py was accepted")
	}
}

// fakeEngine records what the builder asks.
type fakeEngine struct {
	images []dimage.Summary
	tagged []string
	built  int
}

func (f *fakeEngine) ImageList(_ context.Context, opts dimage.ListOptions) ([]dimage.Summary, error) {
	var out []dimage.Summary
	for _, img := range f.images {
		for k, v := range img.Labels {
			if opts.Filters.ExactMatch("label", k+"="+v) {
				out = append(out, img)
			}
		}
	}
	return out, nil
}

func (f *fakeEngine) ImageImport(context.Context, dimage.ImportSource, string, dimage.ImportOptions) (io.ReadCloser, error) {
	return nil, errors.New("not expected")
}

func (f *fakeEngine) ImageBuild(context.Context, io.Reader, build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	f.built++
	return build.ImageBuildResponse{}, errors.New("not expected")
}

func (f *fakeEngine) ImageTag(_ context.Context, source, target string) error {
	f.tagged = append(f.tagged, source+"→"+target)
	return nil
}

func (f *fakeEngine) ImageInspect(context.Context, string, ...client.ImageInspectOption) (dimage.InspectResponse, error) {
	return dimage.InspectResponse{}, errors.New("not expected")
}

// TestBuildReusesAnImageOfTheSameContent: nothing is built, the existing
// image is only tagged.
func TestBuildReusesAnImageOfTheSameContent(t *testing.T) {
	t.Parallel()
	rec, err := NewRecipe(bpagents.RunnerImage(), "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	eng := &fakeEngine{images: []dimage.Summary{{ID: "sha256:abc", Labels: map[string]string{LabelContentHash: rec.Hash}}}}
	var progress bytes.Buffer
	res, err := Build(context.Background(), eng, bpagents.RunnerImage(), Options{Suite: "bookworm", Mirror: "http://archive.example/debian", Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reused || res.ID != "sha256:abc" || eng.built != 0 || !slices.Equal(eng.tagged, []string{"sha256:abc→" + DefaultTag}) {
		t.Errorf("result %+v, built %d, tagged %v", res, eng.built, eng.tagged)
	}
	if !strings.Contains(progress.String(), "up to date") {
		t.Errorf("progress %q does not say it is up to date", progress.String())
	}
}

// TestWriteTree archives a small tree the way the base is imported.
func TestWriteTree(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, d := range []string{"etc", "proc/1", "dev", "usr/bin"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "proc/1/status"), []byte("skip me"), 0o644)
	os.WriteFile(filepath.Join(root, "usr/bin/python3.11"), []byte("#!binary"), 0o755)
	os.Link(filepath.Join(root, "usr/bin/python3.11"), filepath.Join(root, "usr/bin/python3-hard"))
	os.Symlink("python3.11", filepath.Join(root, "usr/bin/python3"))
	var buf bytes.Buffer
	if err := writeTree(&buf, root); err != nil {
		t.Fatal(err)
	}
	got := map[string]*tar.Header{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	for _, want := range []string{"etc/", "etc/passwd", "proc/", "dev/", "usr/bin/python3.11", "usr/bin/python3"} {
		if got[want] == nil {
			t.Errorf("archive lacks %s (has %v)", want, keys(got))
		}
	}
	if got["proc/1/"] != nil || got["proc/1/status"] != nil {
		t.Error("archive holds /proc contents")
	}
	if h := got["usr/bin/python3"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "python3.11" {
		t.Errorf("symlink header %+v", h)
	}
	hard := got["usr/bin/python3-hard"]
	first := got["usr/bin/python3.11"]
	if hard == nil || first == nil || (hard.Typeflag != tar.TypeLink && first.Typeflag != tar.TypeLink) {
		t.Errorf("hard link not kept: %+v %+v", hard, first)
	}
	if first != nil && first.Typeflag == tar.TypeReg && first.Mode&0o111 == 0 {
		t.Errorf("executable mode lost: %o", first.Mode)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestBuildIsANoOpWhenTheImageExists asks the real engine: with the image
// present, a build only re-tags it.
func TestBuildIsANoOpWhenTheImageExists(t *testing.T) {
	t.Parallel()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	_, perr := cli.Ping(ctx)
	testutil.Need(t, "docker", perr == nil, "ping the engine: "+errString(perr))
	_, ierr := cli.ImageInspect(ctx, DefaultTag)
	testutil.Need(t, "docker", ierr == nil, "the runner image (`bpagents image build`): "+errString(ierr))
	res, err := Build(ctx, cli, bpagents.RunnerImage(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reused {
		t.Errorf("a second build did work: %+v", res)
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
