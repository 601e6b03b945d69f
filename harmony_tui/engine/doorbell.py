"""Wakes idle follower ranks without a busy collective.

MLX's ring backend waits for a collective by polling, so a follower that sat in ``all_sum``
until rank 0's next command would keep a core busy all the time it is idle. Instead a follower
waits on a plain TCP socket (no CPU), and rank 0 sends one byte to each follower before every
command it is about to share; the command itself still goes through ``all_sum``.

Rank 0 listens on its own ring address (from ``MLX_HOSTFILE``) on a free port, shares the port
with ``all_sum``, and accepts exactly one connection per follower before anything else happens,
so no byte can be sent before a follower listens. Without a ring hostfile there is no bell and
followers wait in the collective as before.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import Any

ACCEPT_TIMEOUT_S = 30.0


class DoorbellError(RuntimeError):
    """The bell could not be set up, or rank 0's end of it closed."""


def leader_host() -> str | None:
    """Rank 0's ring IP address, from the ring hostfile (None without one)."""
    path = os.environ.get("MLX_HOSTFILE")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            hosts = json.load(handle)
        first = hosts[0][0] if isinstance(hosts[0], list) else hosts[0]
        return str(first).rsplit(":", 1)[0]
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return None


class Doorbell:
    """One socket per follower: rank 0 rings, followers wait."""

    def __init__(self) -> None:
        self._peers: list[socket.socket] = []
        self._bell: socket.socket | None = None

    @classmethod
    def connect(cls, leader: bool, followers: int, share: Callable[[Any], Any]) -> Doorbell:
        """Set the bell up on every rank (``share`` is ``Lockstep.share``: a collective)."""
        bell = cls()
        host = leader_host()
        if leader:
            listener = None
            port = 0
            if host is not None:
                try:
                    listener = socket.create_server((host, 0))
                    port = listener.getsockname()[1]
                except OSError:
                    listener = None
            share(port)
            if listener is None:
                return bell
            listener.settimeout(ACCEPT_TIMEOUT_S)
            try:
                for _ in range(followers):
                    peer, _ = listener.accept()
                    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    bell._peers.append(peer)
            except OSError as err:
                raise DoorbellError(f"a follower did not connect to {host}:{port}: {err}") \
                    from err
            finally:
                listener.close()
            return bell
        port = share(None)
        if port and host is not None:
            try:
                bell._bell = socket.create_connection((host, port), timeout=ACCEPT_TIMEOUT_S)
            except OSError as err:
                raise DoorbellError(f"cannot reach rank 0 at {host}:{port}: {err}") from err
            bell._bell.settimeout(None)
        return bell

    def ring(self) -> None:
        """Rank 0: wake every follower for the next command."""
        for peer in self._peers:
            try:
                peer.sendall(b"!")
            except OSError:
                pass  # that follower is gone: the collective that follows says so

    def wait(self) -> None:
        """A follower: sleep until rank 0 rings (returns at once without a bell)."""
        if self._bell is None:
            return
        try:
            data = self._bell.recv(1)
        except OSError as err:
            raise DoorbellError(f"rank 0's doorbell failed: {err}") from err
        if not data:
            raise DoorbellError("rank 0 closed the connection")

    def close(self) -> None:
        for sock in [*self._peers, *([self._bell] if self._bell else [])]:
            try:
                sock.close()
            except OSError:
                pass
