package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
)

func cmdMint(ctx context.Context, args []string) error {
	return runMint(ctx, args, os.Stdout)
}

// runMint mints credits to an agent through POST /admin/mint. The request
// carries a fresh Idempotency-Key, so the client's own retries mint once.
func runMint(ctx context.Context, args []string, out io.Writer) error {
	fs, cf := clientCommand("mint")
	memo := fs.String("memo", "", "why (kept in the ledger)")
	pos, err := parseWithArgs(fs, args, 2)
	if err != nil {
		return err
	}
	amount, err := money.Parse(pos[1])
	if err != nil {
		return fmt.Errorf("mint: AMOUNT %q: %w", pos[1], err)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var key [12]byte
	rand.Read(key[:])
	var res economy.TransferResult
	err = c.Do(ctx, "POST", "/admin/mint", api.MintRequest{AgentID: pos[0], Amount: amount, Memo: *memo}, &res,
		map[string]string{"Idempotency-Key": "cli-mint-" + hex.EncodeToString(key[:])})
	if err != nil {
		return err
	}
	if *cf.json {
		return writeJSON(out, res)
	}
	fmt.Fprintf(out, "minted %s credits to %s (transfer %d); its balance is now %s\n", res.Amount, res.ToID, res.TransferID, res.Balance)
	return nil
}
