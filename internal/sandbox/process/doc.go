// Package process is the embedded ExecutionSandbox backend: it runs each
// execution as a child process group of this binary, in the agent's workspace,
// under limits the kernel enforces.
//
// It owns the re-exec init helper (MaybeRunInit), the cgroups it creates under
// <cgroup root>/bpagents-<InstanceID>/ (one per execution, per controller on
// cgroup v1), the pid files in its state directory, and the ownership of a
// workspace while an agent runs in it under its own uid. On Linux as root it
// adds PID, mount, IPC and UTS namespaces and cgroup limits; otherwise it falls
// back to rlimits and says so in Capabilities.
//
// It must never run agent code before the limits are in place, let anything
// from the host environment into an agent's environment, follow a symbolic
// link inside a workspace, touch a cgroup, pid file or process that belongs to
// another system instance, or know about credits, bids or the database.
package process
