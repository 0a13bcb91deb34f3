package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Mark is where the ledger stood before a run: Verify looks only at the
// transfers after it.
type Mark struct {
	TransferID int64
}

// ledgerEntry is one transfer as GET /admin/ledger lists it.
type ledgerEntry struct {
	ID     int64  `json:"id"`
	Kind   string `json:"kind"`
	From   string `json:"from"`
	To     string `json:"to"`
	Ref    string `json:"ref"`
	Memo   string `json:"memo"`
	Amount int64  `json:"-"`
}

type ledgerPage struct {
	Entries   []ledgerEntry `json:"entries"`
	LastID    int64         `json:"last_id"`
	NextAfter int64         `json:"next_after"`
}

// operator is an operator's client of the API.
type operator struct {
	url, token string
	http       *http.Client
}

func (o operator) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	resp, err := o.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

func newOperator(url, token string) operator {
	return operator{url: url, token: token, http: &http.Client{Timeout: 60 * time.Second}}
}

// MarkNow returns where the ledger stands, through the operator's API.
func MarkNow(ctx context.Context, url, operatorToken string) (Mark, error) {
	var p ledgerPage
	if err := newOperator(url, operatorToken).get(ctx, "/admin/ledger?limit=1", &p); err != nil {
		return Mark{}, err
	}
	return Mark{TransferID: p.LastID}, nil
}

// Verification is what Verify found.
type Verification struct {
	// Transfers is how many ledger transfers the run made (after the mark).
	Transfers int
	// Effects counts, per operation, the ledger transfers that are the
	// effect of one accepted request (a transfer, a bid's hold, a cancel's
	// release, a message's fee, a spawn's fee).
	Effects map[Op]int
	// Accepted counts, per operation, the keys that got a 2xx answer.
	Accepted map[Op]int
	// Violations lists everything that breaks "each accepted request moved
	// money exactly once, each refused one not at all".
	Violations []string
}

// Verify reads the ledger after mark through the operator's API and checks
// every key of rep against it: each accepted request is exactly one ledger
// effect (found by the transfer memo, which the load sets to the key, or by
// the bid, message or child id its answer named), each refused one none, and
// no effect of the run's kinds exists that no accepted request explains.
// Call it once the run has ended and nothing else acts as the load's agents.
func Verify(ctx context.Context, url, operatorToken string, mark Mark, rep *Report) (Verification, error) {
	op := newOperator(url, operatorToken)
	v := Verification{Effects: map[Op]int{}, Accepted: map[Op]int{}}
	// effects maps an effect's identity (memo or ref) to how many ledger
	// transfers carry it, per operation.
	effects := map[Op]map[string]int{}
	add := func(o Op, id string) {
		if effects[o] == nil {
			effects[o] = map[string]int{}
		}
		effects[o][id]++
		v.Effects[o]++
	}
	after := mark.TransferID
	for {
		var p ledgerPage
		if err := op.get(ctx, fmt.Sprintf("/admin/ledger?after=%d&limit=500", after), &p); err != nil {
			return v, err
		}
		for _, e := range p.Entries {
			v.Transfers++
			switch {
			case e.Kind == "transfer" && strings.HasPrefix(e.Memo, "lg-"):
				add(OpTransfer, e.Memo)
			case e.Kind == "hold":
				add(OpBid, e.Ref)
			case e.Kind == "release" && strings.HasPrefix(e.Memo, "cancelled by "):
				add(OpCancel, e.Ref)
			case e.Kind == "message_fee":
				add(OpMessage, e.Ref)
			case e.Kind == "spawn_fee":
				add(OpSpawn, e.Ref)
			}
			after = e.ID
		}
		if p.NextAfter == 0 {
			break
		}
	}
	explained := map[Op]map[string]bool{}
	for _, key := range slices.Sorted(maps.Keys(rep.Keys)) {
		rec := rep.Keys[key]
		id := key // a transfer's memo is its key
		if rec.OK != nil {
			v.Accepted[rec.Op]++
			switch rec.Op {
			case OpBid, OpMessage:
				id = jsonString(rec.OK, "id")
			case OpSpawn:
				id = jsonString(rec.OK, "child_id")
			case OpCancel:
				id = jsonString(rec.OK, "id")
			}
		}
		want := 0
		if rec.OK != nil {
			want = 1
		}
		if rec.OK == nil && rec.Op != OpTransfer {
			continue // refused everywhere: nothing names an effect to look for
		}
		if got := effects[rec.Op][id]; got != want {
			v.Violations = append(v.Violations, fmt.Sprintf("%s %s (sent %d times, statuses %v): %d ledger effects for %q, want %d",
				rec.Op, key, rec.Sent, rec.Statuses, got, id, want))
		}
		if explained[rec.Op] == nil {
			explained[rec.Op] = map[string]bool{}
		}
		explained[rec.Op][id] = true
	}
	for _, o := range slices.Sorted(maps.Keys(effects)) {
		for _, id := range slices.Sorted(maps.Keys(effects[o])) {
			if !explained[o][id] {
				v.Violations = append(v.Violations, fmt.Sprintf("%s: %d ledger effects for %q, which no accepted request explains",
					o, effects[o][id], id))
			}
		}
	}
	return v, nil
}

// Write prints the verification.
func (v Verification) Write(w io.Writer) {
	fmt.Fprintf(w, "ledger: %d transfers during the run;", v.Transfers)
	for _, o := range slices.Sorted(maps.Keys(v.Accepted)) {
		fmt.Fprintf(w, " %s %d accepted/%d effects;", o, v.Accepted[o], v.Effects[o])
	}
	fmt.Fprintf(w, " violations: %d\n", len(v.Violations))
	for i, s := range v.Violations {
		if i == 20 {
			fmt.Fprintf(w, "… and %d more\n", len(v.Violations)-20)
			break
		}
		fmt.Fprintln(w, "violation:", s)
	}
}
