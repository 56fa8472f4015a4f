"""Run a command behind a DNS server that never answers: a cluster's DNS gone quiet.

Meant to be started inside fresh mount and network namespaces
(``unshare --mount --net -- python -m tests.silent_dns RESOLV_CONF REPORT -- COMMAND...``), so
nothing on this machine sees it: it brings up the namespace's own loopback, puts ``RESOLV_CONF``
in place of ``/etc/resolv.conf`` (it should name ``nameserver 127.0.0.1``), binds UDP port 53
there, and then becomes ``COMMAND`` (same pid). A forked child keeps the port, never answers,
and appends each name it is asked for to ``REPORT``, one line each; it ends when the command does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def _question_name(query: bytes) -> str:
    """The first question's name of a DNS query (RFC 1035 §4.1.2), dotted."""
    labels, at = [], 12  # after the header
    while at < len(query) and query[at]:
        length = query[at]
        labels.append(query[at + 1 : at + 1 + length].decode("ascii", "replace"))
        at += 1 + length
    return ".".join(labels)


def _listen(sock: socket.socket, report: Path, parent: int) -> None:
    sock.settimeout(0.2)
    while os.getppid() == parent:  # the command has ended: so do we
        try:
            query, _ = sock.recvfrom(4096)
        except TimeoutError:
            continue
        with report.open("a") as out:
            out.write(_question_name(query) + "\n")


def main(argv: list[str]) -> None:
    """``RESOLV_CONF REPORT -- COMMAND...``"""
    resolv_conf, report, separator, *command = argv
    assert separator == "--" and command, "usage: RESOLV_CONF REPORT -- COMMAND..."
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "--bind", resolv_conf, "/etc/resolv.conf"], check=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    parent = os.getpid()
    if os.fork() == 0:
        try:
            _listen(sock, Path(report), parent)
        finally:
            os._exit(0)
    sock.close()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
