// Package image owns building the bp-agent-runner image on a host that has no
// container registry: it bootstraps a minimal Debian base with debootstrap
// (python3 and the Debian packages of runtime/pyproject.toml's dependencies),
// imports it into the Docker Engine, builds runtime/Dockerfile.debian on top
// of it with the engine's build API, and labels both images with a hash of
// what they were built from, so that a second build of the same content does
// nothing.
//
// It talks to the engine only through its API (never the docker CLI), reads
// the Debian mirror from apt's own configuration at run time, and never runs
// agent code or touches a workspace.
package image

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	dimage "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// Labels put on the images this package builds.
const (
	// LabelContentHash is the hash of everything the runner image was built
	// from (base inputs and runtime/ files).
	LabelContentHash = "org.bpagents.content-hash"
	// LabelBaseHash is the hash of the base image's inputs (suite, packages).
	LabelBaseHash = "org.bpagents.base-hash"
)

// DefaultTag is the runner image's default name.
const DefaultTag = "bp-agent-runner:latest"

// BaseRepository names base images; the tag is a prefix of their hash.
const BaseRepository = "bp-agent-base"

// recipeVersion changes whenever the way images are built changes, so that
// images built the old way are not mistaken for current ones.
const recipeVersion = "bpagents-image/1"

// Engine is the part of the Docker Engine API the builder uses;
// *client.Client implements it.
type Engine interface {
	ImageList(ctx context.Context, opts dimage.ListOptions) ([]dimage.Summary, error)
	ImageImport(ctx context.Context, src dimage.ImportSource, ref string, opts dimage.ImportOptions) (io.ReadCloser, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, opts build.ImageBuildOptions) (build.ImageBuildResponse, error)
	ImageTag(ctx context.Context, source, target string) error
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (dimage.InspectResponse, error)
}

// Options tune a build.
type Options struct {
	// Tag names the runner image (DefaultTag when empty).
	Tag string
	// Suite is the Debian suite to bootstrap; empty takes it from apt's
	// sources on this host.
	Suite string
	// Mirror is the Debian archive URL; empty takes it from apt's sources.
	Mirror string
	// WorkDir holds the temporary root filesystem (on disk, not a noexec
	// tmpfs); empty means /var/tmp.
	WorkDir string
	// Force rebuilds the base and the runner even when images built from
	// the same content exist.
	Force bool
	// InstallTools lets the builder install debootstrap with apt-get when it
	// is missing.
	InstallTools bool
	// Progress receives human-readable progress lines; nil discards them.
	Progress io.Writer
}

// Result describes the runner image.
type Result struct {
	Tag         string
	ID          string
	ContentHash string
	Base        string // the base image's reference
	// Reused is true when nothing was built: an image of the same content
	// existed.
	Reused   bool
	Packages []string // Debian packages installed in the base
}

// Recipe is what an image is built from, and the hashes that name it.
type Recipe struct {
	Suite    string
	Packages []string
	Files    map[string][]byte // runtime/ files by name
	BaseHash string
	Hash     string
}

// NewRecipe reads the runtime/ files (Dockerfile.debian, pyproject.toml and
// the runner's files) and works out the packages and hashes for suite.
func NewRecipe(files fs.FS, suite string) (Recipe, error) {
	r := Recipe{Suite: suite, Files: map[string][]byte{}}
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		r.Files[path] = data
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("image: read runtime files: %w", err)
	}
	for _, need := range []string{"Dockerfile.debian", "pyproject.toml", "bp-agent-run", "entrypoint.py"} {
		if _, ok := r.Files[need]; !ok {
			return r, fmt.Errorf("image: runtime files lack %s", need)
		}
	}
	deps, err := PyprojectDependencies(r.Files["pyproject.toml"])
	if err != nil {
		return r, fmt.Errorf("image: %w", err)
	}
	r.Packages = []string{"python3"}
	for _, d := range deps {
		r.Packages = append(r.Packages, "python3-"+strings.ToLower(strings.ReplaceAll(d, "_", "-")))
	}
	slices.Sort(r.Packages)
	r.Packages = slices.Compact(r.Packages)

	h := sha256.New()
	fmt.Fprintf(h, "%s\nsuite %s\npackages %s\n", recipeVersion, suite, strings.Join(r.Packages, ","))
	r.BaseHash = hex.EncodeToString(h.Sum(nil))
	h.Reset()
	fmt.Fprintf(h, "%s\nbase %s\n", recipeVersion, r.BaseHash)
	names := make([]string, 0, len(r.Files))
	for name := range r.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(h, "file %s %d\n", name, len(r.Files[name]))
		h.Write(r.Files[name])
	}
	r.Hash = hex.EncodeToString(h.Sum(nil))
	return r, nil
}

// BaseRef is the base image's reference.
func (r Recipe) BaseRef() string { return BaseRepository + ":" + r.BaseHash[:16] }

// Build makes sure opt.Tag names a runner image built from files (the
// runtime/ directory) and returns it. When an image of the same content
// exists it only tags it.
func Build(ctx context.Context, eng Engine, files fs.FS, opt Options) (Result, error) {
	opt.Tag = cmp.Or(opt.Tag, DefaultTag)
	opt.WorkDir = cmp.Or(opt.WorkDir, "/var/tmp")
	p := newProgress(opt.Progress)
	src := Source{URI: opt.Mirror, Suite: opt.Suite}
	if src.URI == "" || src.Suite == "" {
		found, err := DebianSource()
		if err != nil {
			return Result{}, err
		}
		if src.URI == "" {
			src.URI, src.Keyring = found.URI, found.Keyring
		}
		src.Suite = cmp.Or(src.Suite, found.Suite)
	}
	rec, err := NewRecipe(files, src.Suite)
	if err != nil {
		return Result{}, err
	}
	res := Result{Tag: opt.Tag, ContentHash: rec.Hash, Base: rec.BaseRef(), Packages: rec.Packages}
	if !opt.Force {
		if id, err := findLabelled(ctx, eng, LabelContentHash, rec.Hash); err != nil {
			return res, err
		} else if id != "" {
			if err := eng.ImageTag(ctx, id, opt.Tag); err != nil {
				return res, fmt.Errorf("image: tag %s: %w", opt.Tag, err)
			}
			p.say("%s is up to date (content %s, image %s)", opt.Tag, rec.Hash[:12], shortID(id))
			res.ID, res.Reused = id, true
			return res, nil
		}
	}
	start := time.Now()
	baseID := ""
	if !opt.Force {
		if baseID, err = findLabelled(ctx, eng, LabelBaseHash, rec.BaseHash); err != nil {
			return res, err
		}
	}
	if baseID != "" {
		if err := eng.ImageTag(ctx, baseID, rec.BaseRef()); err != nil {
			return res, fmt.Errorf("image: tag %s: %w", rec.BaseRef(), err)
		}
		p.say("base %s exists (%s)", rec.BaseRef(), shortID(baseID))
	} else if err := buildBase(ctx, eng, rec, src, opt, p); err != nil {
		return res, err
	}
	id, err := buildRunner(ctx, eng, rec, opt.Tag, p)
	if err != nil {
		return res, err
	}
	res.ID = id
	p.say("built %s (%s, content %s) in %s", opt.Tag, shortID(id), rec.Hash[:12], time.Since(start).Round(100*time.Millisecond))
	return res, nil
}

// findLabelled returns the id of an image carrying label=value, or "".
func findLabelled(ctx context.Context, eng Engine, label, value string) (string, error) {
	list, err := eng.ImageList(ctx, dimage.ListOptions{Filters: filters.NewArgs(filters.Arg("label", label+"="+value))})
	if err != nil {
		return "", fmt.Errorf("image: list images: %w", err)
	}
	if len(list) == 0 {
		return "", nil
	}
	slices.SortFunc(list, func(a, b dimage.Summary) int { return cmp.Compare(b.Created, a.Created) })
	return list[0].ID, nil
}

// buildRunner builds Dockerfile.debian on the base and checks the result.
func buildRunner(ctx context.Context, eng Engine, rec Recipe, tag string, p *progress) (string, error) {
	p.say("building %s on %s", tag, rec.BaseRef())
	bctx, err := runnerContext(rec.Files)
	if err != nil {
		return "", err
	}
	base := rec.BaseRef()
	resp, err := eng.ImageBuild(ctx, bctx, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		BuildArgs:   map[string]*string{"BASE": &base},
		Labels:      map[string]string{LabelContentHash: rec.Hash},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("image: build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if err := readMessages(resp.Body, p, "build"); err != nil {
		return "", fmt.Errorf("image: build %s: %w", tag, err)
	}
	img, err := eng.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("image: inspect %s: %w", tag, err)
	}
	if img.Config == nil || img.Config.Labels[LabelContentHash] != rec.Hash {
		return "", errors.New("image: the built image does not carry its content hash")
	}
	return img.ID, nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return id[:min(12, len(id))]
}
