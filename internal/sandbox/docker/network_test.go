package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/bpagents/bpagents/internal/sandbox"
)

// connectProbe tries a TCP connection to each "name=host:port" argument and
// prints one JSON object: name → "connected" or the error.
const connectProbe = `import json, socket, sys, urllib.request
out = {}
for arg in sys.argv[1:]:
    name, target = arg.split("=", 1)
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, int(port)))
        out[name] = "connected"
    except OSError as e:
        out[name] = e.strerror or str(e)
    finally:
        s.close()
print(json.dumps({"probe": out}), flush=True)
`

// TestNetworkReachesOnlyTheAPI checks from inside a real container that the
// API's address and port answer and that everything else the test set up
// on this machine is out of reach: another port on the API's own address,
// a listener on every other address of the host, a container on the same
// sandbox network, and a container on the engine's default bridge (whose
// traffic crosses the host as traffic to any other address would).
func TestNetworkReachesOnlyTheAPI(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	ctx := context.Background()

	// A listener on all the host's addresses, on a port that is not the API's.
	other, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go acceptAndClose(other)
	otherPort := other.Addr().(*net.TCPAddr).Port

	targets := map[string]string{
		"api":                          strings.TrimPrefix(api, "http://"),
		"other port on the api's host": net.JoinHostPort(sb.APIHost(), strconv.Itoa(otherPort)),
	}
	for _, a := range hostIPv4s(t) {
		if a.String() != sb.APIHost() {
			targets["host address "+a.String()] = net.JoinHostPort(a.String(), strconv.Itoa(otherPort))
		}
	}
	// A peer on the sandbox network, listening.
	peerSpec := newSpec(t, newWorkspace(t, nil), api, "python3", "-m", "http.server", "--directory", "/tmp", "8080")
	peer, err := sb.Start(ctx, peerSpec)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Kill(ctx)
	peerIP := containerIP(t, sb, peer.(*handle).id, sb.net.Name)
	targets["container on the sandbox network"] = net.JoinHostPort(peerIP, "8080")
	// A container on the default bridge, listening.
	bridgeIP := bridgeContainer(t, sb)
	targets["container on the default bridge"] = net.JoinHostPort(bridgeIP, "8080")

	// The targets are live: the host itself reaches each of them.
	for name, addr := range targets {
		waitDial(t, name, addr)
	}

	args := []string{"python3", "-c", connectProbe}
	for name, addr := range targets {
		args = append(args, name+"="+addr)
	}
	res := run(t, sb, newSpec(t, newWorkspace(t, nil), api, args...))
	probe, _ := jsonLines(t, res.Output)["probe"].(map[string]any)
	if len(probe) != len(targets) {
		t.Fatalf("probe ended %s (%s): %s", res.Reason, res.Detail, res.Output)
	}
	for name, outcome := range probe {
		t.Logf("%-40s %-22s %v", name, targets[name], outcome)
		if (name == "api") != (outcome == "connected") {
			t.Errorf("%s (%s): %v", name, targets[name], outcome)
		}
	}
}

// TestNoDNSOrIPv6Channel checks the two side doors: name lookups the
// engine's resolver forwards go to the API's host from inside the
// container, where the firewall refuses them (a UDP listener the test binds
// there receives nothing), and IPv6 is off inside the container.
func TestNoDNSOrIPv6Channel(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	dns, err := net.ListenPacket("udp4", net.JoinHostPort(sb.APIHost(), "53"))
	if err != nil {
		t.Skipf("cannot bind the DNS port on the sandbox gateway to watch it: %v", err)
	}
	defer dns.Close()
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := dns.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- fmt.Sprintf("%d bytes from %s", n, from)
		}
	}()
	probe := `import json, socket
out = {}
try:
    out["lookup"] = str(socket.getaddrinfo("exfil.bpagents-test.invalid", 80))
except OSError as e:
    out["lookup"] = "failed: " + str(e)
out["ipv6_disabled"] = open("/proc/sys/net/ipv6/conf/all/disable_ipv6").read().strip()
try:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("::1", 9))
    out["ipv6"] = "connected"
except OSError as e:
    out["ipv6"] = e.strerror or str(e)
print(json.dumps(out), flush=True)
`
	res := run(t, sb, newSpec(t, newWorkspace(t, nil), api, python(probe)...))
	out := jsonLines(t, res.Output)
	t.Logf("inside: %v", out)
	if l, _ := out["lookup"].(string); !strings.HasPrefix(l, "failed") {
		t.Errorf("lookup of an outside name: %v", out["lookup"])
	}
	if out["ipv6_disabled"] != "1" || out["ipv6"] == "connected" {
		t.Errorf("IPv6 inside the container: disabled=%v connect=%v", out["ipv6_disabled"], out["ipv6"])
	}
	select {
	case m := <-got:
		t.Errorf("a DNS query reached the host: %s", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestFirewallLifecycle checks the chain is installed at New (rejecting
// everything), opened to the API's port by AllowAPI, idempotent when set up
// again, and removed with the network on Close.
func TestFirewallLifecycle(t *testing.T) {
	t.Parallel()
	needDocker(t)
	ctx := context.Background()
	cfg := testConfig(t)
	sb, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := sb.fw.rules(ctx)
	if err != nil || strings.Contains(rules, "--dport") || !strings.Contains(rules, "REJECT") {
		t.Errorf("before AllowAPI the chain must reject all: %v\n%s", err, rules)
	}
	if err := sb.AllowAPI(ctx, 4242); err != nil {
		t.Fatal(err)
	}
	rules, _ = sb.fw.rules(ctx)
	if !strings.Contains(rules, "-d "+sb.APIHost()+"/32 -p tcp -m tcp --dport 4242 -j ACCEPT") {
		t.Errorf("after AllowAPI:\n%s", rules)
	}
	// A second backend of the same instance (a restart) sets up the same
	// network and chain without duplicating the jumps.
	again, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.net.ID != sb.net.ID {
		t.Errorf("restart made network %s, want %s", again.net.ID, sb.net.ID)
	}
	if n := jumps(t, sb.fw); n != 2 {
		t.Errorf("%d jumps to the chain after a restart, want 2", n)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.fw.run(ctx, "-n", "-L", sb.fw.chain); err == nil {
		t.Errorf("chain %s still exists after Close", sb.fw.chain)
	}
	if n := jumps(t, sb.fw); n != 0 {
		t.Errorf("%d jumps left after Close", n)
	}
	cli, err := NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.NetworkInspect(ctx, sb.net.Name, network.InspectOptions{}); err == nil {
		t.Errorf("network %s still exists after Close", sb.net.Name)
	}
}

// TestRefusesAnOpenNetwork: a network of the configured name that is not
// internal is never used.
func TestRefusesAnOpenNetwork(t *testing.T) {
	t.Parallel()
	needDocker(t)
	ctx := context.Background()
	cli, err := NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	name := "bpagents-open-" + randomID(t)
	if _, err := cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge"}); err != nil {
		t.Fatal(err)
	}
	defer cli.NetworkRemove(ctx, name)
	cfg := testConfig(t)
	cfg.Network = name
	sb, err := New(ctx, cfg, nil)
	if err == nil {
		sb.Close()
		t.Fatal("New accepted a network that is not internal")
	}
	if !strings.Contains(err.Error(), "not internal") {
		t.Errorf("error %q does not say why", err)
	}
}

func jumps(t *testing.T, fw *firewall) int {
	t.Helper()
	n := 0
	for _, parent := range []string{"INPUT", "DOCKER-USER", "FORWARD"} {
		out, _ := fw.run(context.Background(), "-S", parent)
		n += strings.Count(out, "-j "+fw.chain+"\n")
	}
	return n
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// hostIPv4s lists this machine's IPv4 addresses other than loopback and
// those of sandbox bridges, which other tests create and remove meanwhile.
func hostIPv4s(t *testing.T) []netip.Addr {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, iface := range ifaces {
		if strings.HasPrefix(iface.Name, "bp-") {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() {
				out = append(out, p.Addr())
			}
		}
	}
	return out
}

func containerIP(t *testing.T, sb *Sandbox, id, netName string) string {
	t.Helper()
	insp, err := sb.cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	ep := insp.NetworkSettings.Networks[netName]
	if ep == nil || ep.IPAddress == "" {
		t.Fatalf("container %s has no address on %s", id, netName)
	}
	return ep.IPAddress
}

// bridgeContainer starts a listener in a container on the engine's default
// bridge and returns its address; it is removed when the test ends.
func bridgeContainer(t *testing.T, sb *Sandbox) string {
	t.Helper()
	ctx := context.Background()
	c, err := sb.cli.ContainerCreate(ctx, &container.Config{
		Image: sb.cfg.Image,
		Cmd:   []string{"python3", "-m", "http.server", "--directory", "/tmp", "8080"},
		User:  "1000:1000",
	}, &container.HostConfig{NetworkMode: "bridge", CapDrop: []string{"ALL"}, ReadonlyRootfs: true,
		Tmpfs: map[string]string{"/tmp": "size=1m"}, Mounts: nil}, nil, nil, "bpagents-test-bridge-"+randomID(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	if err := sb.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return containerIP(t, sb, c.ID, "bridge")
}

// waitDial waits until the host can connect to addr.
func waitDial(t *testing.T, name, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("target %s (%s) is not live even from the host: %v", name, addr, err)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

var _ sandbox.AgentNetwork = (*Sandbox)(nil)
