// Package bpagents holds the files the binary carries with it: the genesis
// agent project (agents/genesis), installed into the first workspace so that
// `bpagents up` works from any directory. It holds no logic.
package bpagents

import (
	"embed"
	"io/fs"
)

//go:embed agents/genesis
var genesisFS embed.FS

// GenesisProject returns the genesis agent's project files.
func GenesisProject() fs.FS {
	sub, err := fs.Sub(genesisFS, "agents/genesis")
	if err != nil {
		panic(err) // the path is fixed at compile time
	}
	return sub
}
