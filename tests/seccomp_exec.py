#!/usr/bin/python3
"""Runs a command under the seccomp filter a systemd unit's SystemCallFilter= lines make.

Usage: seccomp_exec.py --nofile N --filter VALUE [--filter VALUE ...] -- COMMAND [ARG ...]

Each --filter is the value of one SystemCallFilter= line, in the unit's order, with
systemd's meaning: the first line without `~` makes an allow list, `~` lines take their
calls out of it, and @default is always allowed. Groups are expanded from
`systemd-analyze syscall-filter`, so they are this systemd's groups. Unlike the unit
(SystemCallErrorNumber=EPERM), a call outside the list kills the process (SIGSYS), so a
test sees every filtered call. --nofile sets the soft and hard open-file limit first,
as LimitNOFILE= does (capped at the
current hard limit). Needs Debian's python3-seccomp (libseccomp's bindings).
"""
import os
import resource
import subprocess
import sys

import seccomp


def groups():
    out = subprocess.run(["systemd-analyze", "syscall-filter"], check=True, capture_output=True, text=True).stdout
    table, name = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            name = line.strip()
            table[name] = []
        elif line.startswith("    ") and name and not line.strip().startswith("#"):
            table[name].append(line.strip())
        elif not line.strip():
            name = None
    return table


def expand(item, table, seen=()):
    if not item.startswith("@"):
        return {item}
    if item not in table:
        sys.exit(f"seccomp_exec: unknown syscall group {item}")
    calls = set()
    for entry in table[item]:
        if entry not in seen:
            calls |= expand(entry, table, seen + (item,))
    return calls


def main(argv):
    filters, nofile = [], None
    while argv and argv[0] != "--":
        flag, value, argv = argv[0], argv[1], argv[2:]
        if flag == "--filter":
            filters.append(value)
        elif flag == "--nofile":
            nofile = int(value)
        else:
            sys.exit(f"seccomp_exec: unknown flag {flag}")
    command = argv[1:]
    if not filters or not command:
        sys.exit(__doc__)
    table = groups()
    allowed = None
    for value in filters:
        deny = value.startswith("~")
        calls = set()
        for item in value.lstrip("~").split():
            calls |= expand(item, table)
        if deny:
            allowed = (allowed if allowed is not None else set()) - calls
        else:
            allowed = (allowed or set()) | calls
    allowed |= expand("@default", table)
    if nofile is not None:
        # Soft = hard, as LimitNOFILE=N sets them; not above this process's hard limit,
        # which a non-root process cannot raise.
        nofile = min(nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    f = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
    known = 0
    for call in sorted(allowed):
        try:
            f.add_rule(seccomp.ALLOW, call)
            known += 1
        except (RuntimeError, ValueError, OSError):
            pass  # not a call on this architecture or unknown to libseccomp: stays blocked
    print(f"seccomp_exec: {known} system calls allowed", file=sys.stderr, flush=True)
    f.load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
