"""Network namespaces for tests: each joined to the host by its own veth pair.

Namespace ``i`` gets the /30 ``10.231.<n>.0``: the host end ``.1``, the namespace end ``.2``,
so a process started in it (``ip netns exec``) has its own interfaces, its own loopback and
address, and reaches the host's services only at the host end's address. Needs root (or
CAP_NET_ADMIN) and iproute2; :func:`unavailable` says why not when they are missing.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "not root: creating a network namespace needs CAP_NET_ADMIN"
    probe = f"pkprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        err = exc.stderr.decode().strip() if isinstance(exc, subprocess.CalledProcessError) else ""
        return f"`ip netns add` failed: {err or exc}"
    return None


class Namespace:
    def __init__(self, subnet: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"pk{tag}"
        self.host_if = f"pkh{tag}"
        self.host_ip = f"10.231.{subnet}.1"
        self.ip = f"10.231.{subnet}.2"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", f"pkn{tag}")
            _ip("link", "set", f"pkn{tag}", "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            inside = ("netns", "exec", self.name, "ip")
            _ip(*inside, "addr", "add", f"{self.ip}/30", "dev", f"pkn{tag}")
            _ip(*inside, "link", "set", f"pkn{tag}", "up")
            _ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise

    def prefix(self) -> list[str]:
        """The command prefix that runs a program inside this namespace."""
        return ["ip", "netns", "exec", self.name]

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


def make(count: int) -> list[Namespace]:
    """``count`` namespaces on distinct random /30s (concurrent runs do not collide)."""
    subnets = random.sample(range(16, 240), count)
    made: list[Namespace] = []
    try:
        for subnet in subnets:
            made.append(Namespace(subnet))
    except BaseException:
        for ns in made:
            ns.delete()
        raise
    return made
