"""Whether a Ray cluster's address answers, before `ray.init` waits on it.

`ray.init(address="host:port")` on an address where nothing listens retries
for a minute or more without a word.  A short TCP connect to the head's GCS
port (or the Ray Client port of a `ray://` address) tells in a few seconds
that nothing is there, and the caller can say so in one line.
"""

from __future__ import annotations

import socket

# Addresses Ray resolves itself (a local cluster, the one this machine last started).
_RESOLVED_BY_RAY = ("auto", "local")


def cluster_problem(address: str, timeout: float = 3.0) -> str | None:
    """None if `address` is one Ray resolves itself or a TCP connect to it succeeds;
    otherwise one line saying why the cluster cannot be reached.

    >>> cluster_problem("auto") is None
    True
    >>> cluster_problem("nowhere")
    "--address: expected HOST:PORT (or ray://HOST:PORT, auto), got 'nowhere'"
    """
    text = address.strip()
    if text in _RESOLVED_BY_RAY:
        return None
    target = text.removeprefix("ray://")
    host, colon, port_text = target.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return f"--address: expected HOST:PORT (or ray://HOST:PORT, auto), got {address!r}"
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout):
            return None
    except OSError as e:
        if isinstance(e, TimeoutError):
            why = f"no answer within {timeout:g} s"
        else:
            why = e.strerror or type(e).__name__
        return f"the Ray cluster at {address} cannot be reached: {why}"
