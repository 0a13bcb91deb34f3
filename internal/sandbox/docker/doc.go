// Package docker is the ExecutionSandbox backend over the Docker Engine API:
// each execution is one container of the bp-agent-runner image, created,
// started, waited for and removed through the engine's Go SDK (never the
// docker CLI).
//
// It owns the containers labelled with its system instance
// (org.bpagents.instance), the instance's dedicated internal network and the
// host firewall chain that lets that network reach the system API's port and
// nothing else, and the per-execution cgroup parents it reads CPU and memory
// accounting from. A container gets the agent's workspace bind-mounted
// read-write at /workspace as its working directory, a read-only root
// filesystem with a size-capped tmpfs at /tmp, no capabilities,
// no-new-privileges, a non-root uid that owns the workspace, the bundle's
// memory (no swap), CPU and pids limits, and is killed at the deadline.
//
// It must never run agent code outside such a container, mount anything of
// the host but the agent's own workspace, pass anything from the host
// environment into a container, touch a container, network or firewall rule
// of another system instance, or know about credits, bids or the database.
package docker
