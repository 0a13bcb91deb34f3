package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// Bridge driver options the sandbox network needs.
const (
	optICC        = "com.docker.network.bridge.enable_icc"
	optMasquerade = "com.docker.network.bridge.enable_ip_masquerade"
	optBridgeName = "com.docker.network.bridge.name"
)

// sandboxNet is the dedicated network executions join.
type sandboxNet struct {
	Name    string
	ID      string
	Bridge  string     // the host's bridge interface
	Gateway netip.Addr // the host's address on it: where agents reach the API
	Subnet  netip.Prefix
	Ours    bool // labelled with this instance: removed on Close
}

// bridgeName is the interface name of an instance's bridge (at most 15
// bytes, the kernel's limit).
func bridgeName(instance string) string {
	if len(instance) <= 12 {
		return "bp-" + instance
	}
	sum := sha256.Sum256([]byte(instance))
	return "bp-" + hex.EncodeToString(sum[:])[:12]
}

// ensureNetwork returns the instance's network, creating it when missing:
// an internal bridge (no route out of the host) with inter-container
// traffic and masquerading off. An existing network of that name is used
// only if it is set up that way and belongs to this instance or to nobody.
func ensureNetwork(ctx context.Context, cli *client.Client, name, instance string) (sandboxNet, error) {
	insp, err := cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if errdefs.IsNotFound(err) {
		no := false
		_, err = cli.NetworkCreate(ctx, name, network.CreateOptions{
			Driver:     "bridge",
			Internal:   true,
			EnableIPv6: &no,
			Options: map[string]string{
				optICC:        "false",
				optMasquerade: "false",
				optBridgeName: bridgeName(instance),
			},
			Labels: map[string]string{LabelInstance: instance, LabelManaged: "true"},
		})
		if err != nil && !errdefs.IsConflict(err) {
			return sandboxNet{}, fmt.Errorf("create network %s: %w", name, err)
		}
		insp, err = cli.NetworkInspect(ctx, name, network.InspectOptions{})
	}
	if err != nil {
		return sandboxNet{}, fmt.Errorf("inspect network %s: %w", name, err)
	}
	return checkNetwork(insp, instance)
}

// checkNetwork verifies that an existing network isolates its containers.
func checkNetwork(insp network.Inspect, instance string) (sandboxNet, error) {
	bad := func(why string) (sandboxNet, error) {
		return sandboxNet{}, fmt.Errorf("network %s cannot hold sandboxes: %s; remove it or choose another docker.network", insp.Name, why)
	}
	switch owner := insp.Labels[LabelInstance]; {
	case insp.Driver != "bridge":
		return bad("driver is " + insp.Driver + ", not bridge")
	case !insp.Internal:
		return bad("it is not internal (its containers could reach the outside)")
	case insp.Options[optICC] != "false":
		return bad("inter-container traffic is enabled")
	case owner != "" && owner != instance:
		return bad("it belongs to system instance " + owner)
	case len(insp.IPAM.Config) == 0:
		return bad("it has no IPv4 subnet")
	}
	n := sandboxNet{Name: insp.Name, ID: insp.ID, Bridge: insp.Options[optBridgeName], Ours: insp.Labels[LabelInstance] == instance}
	if n.Bridge == "" {
		n.Bridge = "br-" + insp.ID[:12]
	}
	for _, c := range insp.IPAM.Config {
		gw, gerr := netip.ParseAddr(c.Gateway)
		sub, serr := netip.ParsePrefix(c.Subnet)
		if gerr == nil && serr == nil && gw.Is4() {
			n.Gateway, n.Subnet = gw, sub
			return n, nil
		}
	}
	return bad("it has no IPv4 gateway")
}

// removeNetwork removes the network if it is this instance's and empty.
func removeNetwork(ctx context.Context, cli *client.Client, n sandboxNet) error {
	if !n.Ours {
		return nil
	}
	if err := cli.NetworkRemove(ctx, n.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", n.Name, err)
	}
	return nil
}
