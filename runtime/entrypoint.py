"""Resolve an agent's entrypoint by the bpagents contract and run it.

System code of the bp-agent-runner image (never placed in a workspace). The
rules, in order (SPEC section 4): agent.json's "command"; else
`python3 main.py` when main.py exists; else `./main` when it is an executable
file; else the execution fails with reason no_entrypoint (exit status 127).
Files are read without following symbolic links, agent.json with a size cap,
as the docker sandbox's own resolver does.
"""

import json
import os
import stat
import sys

MAX_AGENT_JSON = 64 << 10


def fail(msg):
    print("bp-agent-run: " + msg, file=sys.stderr, flush=True)
    sys.exit(127)


def regular(name):
    try:
        return os.lstat(name)
    except FileNotFoundError:
        return None


def agent_json_command():
    st = regular("agent.json")
    if st is None:
        return None
    if not stat.S_ISREG(st.st_mode):
        fail("agent.json: not a regular file")
    fd = os.open("agent.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_AGENT_JSON + 1)
    if len(data) > MAX_AGENT_JSON:
        fail("agent.json: larger than %d bytes" % MAX_AGENT_JSON)
    try:
        doc = json.loads(data)
    except ValueError as e:
        fail("agent.json: %s" % e)
    cmd = doc.get("command") if isinstance(doc, dict) else None
    if cmd is None:
        return None
    if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd) or not cmd[0]:
        fail("agent.json: command must be a non-empty list of strings")
    return cmd


def main():
    cmd = agent_json_command()
    if cmd is None:
        st = regular("main.py")
        if st is not None and stat.S_ISREG(st.st_mode):
            cmd = ["python3", "main.py"]
    if cmd is None:
        st = regular("main")
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            cmd = ["./main"]
    if cmd is None:
        fail("no_entrypoint: no agent.json command, no main.py and no executable main")
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        fail("cannot run %s: %s" % (cmd[0], e))


if __name__ == "__main__":
    main()
