"""Relay of kamcmd packets to Kamailio's own ctl socket, on a thread of its own.

A relayed command can take seconds (a large ``ul.dump``, a stuck ctl); done on the pinger's
core thread it would delay every ping.  The core thread submits packets here and goes on;
this thread does the blocking exchange, stores the reply in the ``Pending`` it was given and
writes a byte to a pipe the core thread selects on.  One command at a time, in order; at most
``MAX_QUEUED`` wait, later ones get a fault at once.  This thread never calls ``KSR``.
"""

from __future__ import annotations

import os
import queue
import socket
import threading

from ka_core.ops import binrpc
from ka_core.ops.kamcmd import Pending, Relay
from kemi import wakeup

FORWARD_TIMEOUT_S = 5.0
RECV_BYTES = 65536
MAX_QUEUED = 256
MAX_REPLY = 64 << 20


def exchange(path: str, packet: bytes, cookie: int) -> bytes:
    """Pass one packet to Kamailio's ctl and return its reply unchanged (a fault on error)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
            ctl.settimeout(FORWARD_TIMEOUT_S)
            ctl.connect(path)
            ctl.sendall(packet)
            reader = binrpc.PacketReader(max_packet=MAX_REPLY)
            while (reply := reader.next_packet()) is None:
                data = ctl.recv(RECV_BYTES)
                if not data:
                    raise ConnectionError("ctl closed the connection")
                reader.feed(data)
            return reply
    except (OSError, binrpc.BinrpcError) as exc:
        return binrpc.encode_fault(cookie, 500, f"kamailio ctl not reachable: {exc}")


class CtlRelay:
    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.Queue[tuple[Relay, Pending] | None] = queue.Queue(MAX_QUEUED)
        self.done_fd, self._done_w = wakeup.pipe()
        self._thread = threading.Thread(target=self._run, name="ka-ctl-relay", daemon=True)
        self._thread.start()

    def submit(self, relay: Relay) -> Pending:
        """Queue a packet; its ``transform`` (pure, no KSR) is applied to the reply here."""
        pending = Pending()
        try:
            self._jobs.put_nowait((relay, pending))
        except queue.Full:
            text = "kamailio ctl relay busy, try again"
            pending.data = binrpc.encode_fault(relay.cookie, 500, text)
        return pending

    def drain_done(self) -> None:
        """Core thread: clear the wake-up bytes (the replies are in their ``Pending``)."""
        wakeup.drain(self.done_fd)

    def close(self) -> None:
        """Stop the thread after the command it is on, and release the pipe."""
        self._jobs.put(None)
        self._thread.join(FORWARD_TIMEOUT_S + 1)
        os.close(self.done_fd)
        os.close(self._done_w)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            relay, pending = job
            reply = exchange(self._path, relay.packet, relay.cookie)
            try:
                pending.data = reply if relay.transform is None else relay.transform(reply)
            except (binrpc.BinrpcError, ValueError) as exc:
                text = f"bad reply from ctl: {exc}"
                pending.data = binrpc.encode_fault(relay.cookie, 500, text)
            wakeup.poke(self._done_w)
