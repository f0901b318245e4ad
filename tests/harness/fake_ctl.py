"""A stand-in for Kamailio's ctl socket that takes its time: the relay's slow command."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from ka_core.ops import binrpc


class SlowCtl:
    """A stand-in for Kamailio's ctl: answers every request after ``delay`` seconds."""

    def __init__(self, path: Path, delay: float) -> None:
        self.served = 0
        self.delay = delay
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                reader = binrpc.PacketReader()
                while (packet := reader.next_packet()) is None:
                    reader.feed(conn.recv(4096))
                request = binrpc.decode_request(packet)
                time.sleep(self.delay)
                names: list[binrpc.Value] = ["core.version", "core.uptime"]
                values = (
                    names if request.method == "system.listMethods" else ["slow " + request.method]
                )
                self.served += 1
                conn.sendall(binrpc.encode_reply(request.cookie, values))

    def close(self) -> None:
        self.sock.close()
