package docker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// firewall keeps the host rules that confine the sandbox network: one chain
// of this instance, jumped to for every packet that arrives from the
// network's bridge (INPUT: to the host itself) or that would cross the host
// from it (DOCKER-USER, or FORWARD when the engine has no such chain). The
// chain accepts TCP to the API's address and port, and replies within
// connections the host itself opened, and rejects everything else, so a container reaches the system API and nothing else: no other
// port of the host on any of its addresses, no other container, no other
// network.
//
// The chain is replaced atomically (iptables-restore --noflush) so that no
// packet ever sees it half-built, and the jumps are added only when absent,
// so set-up is idempotent after a crash. remove deletes jumps and chain.
type firewall struct {
	iptables string
	restore  string
	chain    string
	bridge   string
	gateway  netip.Addr

	mu    sync.Mutex
	ports []int
	hooks [][]string // the jump rules in place, as iptables arguments
}

// chainName is the instance's chain (iptables allows 28 bytes).
func chainName(instance string) string {
	if len(instance) <= 19 {
		return "BPAGENTS-" + instance
	}
	sum := sha256.Sum256([]byte(instance))
	return "BPAGENTS-" + hex.EncodeToString(sum[:])[:16]
}

// findIPTables returns iptables and iptables-restore of the same kind.
func findIPTables(configured string) (string, string, error) {
	bin := configured
	if bin == "" {
		for _, p := range []string{"/usr/sbin/iptables", "/sbin/iptables"} {
			if _, err := os.Stat(p); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		p, err := exec.LookPath("iptables")
		if err != nil {
			return "", "", errors.New("iptables not found (install iptables, or set docker.firewall: false and accept that containers reach every host port)")
		}
		bin = p
	}
	restore := filepath.Join(filepath.Dir(bin), strings.Replace(filepath.Base(bin), "iptables", "iptables-restore", 1))
	if _, err := os.Stat(restore); err != nil {
		return "", "", fmt.Errorf("%s not found next to %s", filepath.Base(restore), bin)
	}
	return bin, restore, nil
}

// newFirewall installs the chain (rejecting everything until allow is
// called) and its jumps.
func newFirewall(ctx context.Context, configured, instance, bridge string, gateway netip.Addr) (*firewall, error) {
	bin, restore, err := findIPTables(configured)
	if err != nil {
		return nil, err
	}
	f := &firewall{iptables: bin, restore: restore, chain: chainName(instance), bridge: bridge, gateway: gateway}
	if err := f.load(ctx); err != nil {
		return nil, err
	}
	forward := "DOCKER-USER"
	if _, err := f.run(ctx, "-n", "-L", forward); err != nil {
		forward = "FORWARD"
	}
	for _, parent := range []string{"INPUT", forward} {
		rule := []string{parent, "-i", bridge, "-j", f.chain}
		if _, err := f.run(ctx, append([]string{"-C"}, rule...)...); err != nil {
			if _, err := f.run(ctx, append([]string{"-I", parent, "1"}, rule[1:]...)...); err != nil {
				return nil, fmt.Errorf("firewall: hook %s: %w", parent, err)
			}
		}
		f.hooks = append(f.hooks, rule)
	}
	return f, nil
}

// allow lets the network reach the gateway's TCP port.
func (f *firewall) allow(ctx context.Context, port int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.ports, port) {
		f.ports = append(f.ports, port)
	}
	return f.load(ctx)
}

// load replaces the chain's rules in one transaction.
func (f *firewall) load(ctx context.Context) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n", f.chain)
	// Replies to connections the host opened (the operator reaching into a
	// container) pass; nothing a container opens itself does.
	fmt.Fprintf(&b, "-A %s -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n", f.chain)
	for _, p := range f.ports {
		fmt.Fprintf(&b, "-A %s -d %s/32 -p tcp -m tcp --dport %d -j ACCEPT\n", f.chain, f.gateway, p)
	}
	fmt.Fprintf(&b, "-A %s -p tcp -j REJECT --reject-with tcp-reset\n", f.chain)
	fmt.Fprintf(&b, "-A %s -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n", f.chain)
	cmd := exec.CommandContext(ctx, f.restore, "-w", "--noflush")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("firewall: load chain %s: %w: %s", f.chain, err, quietOutput(out))
	}
	return nil
}

// remove deletes the jumps and the chain.
func (f *firewall) remove(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, rule := range f.hooks {
		for range 10 { // a rule added twice by hand is deleted twice
			if _, err := f.run(ctx, append([]string{"-D"}, rule...)...); err != nil {
				break
			}
		}
	}
	f.hooks = nil
	if _, err := f.run(ctx, "-n", "-L", f.chain); err != nil {
		return nil // already gone (another backend of this instance removed it)
	}
	if _, err := f.run(ctx, "-F", f.chain); err != nil {
		errs = append(errs, err)
	}
	if _, err := f.run(ctx, "-X", f.chain); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firewall: remove chain %s: %w", f.chain, err)
	}
	return nil
}

// rules lists the chain's rules (tests, diagnostics).
func (f *firewall) rules(ctx context.Context) (string, error) {
	return f.run(ctx, "-S", f.chain)
}

func (f *firewall) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, f.iptables, append([]string{"-w"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, quietOutput(out))
	}
	return string(out), nil
}

// quietOutput drops iptables' notice about legacy tables, which is noise.
func quietOutput(out []byte) string {
	var keep []string
	for line := range strings.Lines(string(bytes.TrimSpace(out))) {
		if !strings.Contains(line, "iptables-legacy tables present") {
			keep = append(keep, strings.TrimSpace(line))
		}
	}
	return strings.Join(keep, "; ")
}

func (f *firewall) describe() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ports := make([]string, len(f.ports))
	for i, p := range f.ports {
		ports[i] = strconv.Itoa(p)
	}
	return fmt.Sprintf("iptables chain %s on bridge %s accepts only TCP to %s:%s", f.chain, f.bridge, f.gateway, strings.Join(ports, ","))
}
