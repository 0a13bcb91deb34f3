// Package bpagents holds the files the binary carries with it: the genesis
// agent project (agents/genesis), installed into the first workspace so that
// `bpagents up` works from any directory, and the definition of the
// bp-agent-runner image (runtime/), which `bpagents image build` builds. It
// holds no logic.
package bpagents

import (
	"embed"
	"io/fs"
)

//go:embed agents/genesis
var genesisFS embed.FS

//go:embed runtime
var runtimeFS embed.FS

// GenesisProject returns the genesis agent's project files.
func GenesisProject() fs.FS {
	sub, err := fs.Sub(genesisFS, "agents/genesis")
	if err != nil {
		panic(err) // the path is fixed at compile time
	}
	return sub
}

// RunnerImage returns the bp-agent-runner image definition: Dockerfile,
// Dockerfile.debian, pyproject.toml and the runner's own files.
func RunnerImage() fs.FS {
	sub, err := fs.Sub(runtimeFS, "runtime")
	if err != nil {
		panic(err) // the path is fixed at compile time
	}
	return sub
}
