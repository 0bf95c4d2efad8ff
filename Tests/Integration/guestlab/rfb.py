"""A tiny RFB (VNC) client: just enough of RFC 6143 to make QEMU emit VNC_CONNECTED,
VNC_INITIALIZED and VNC_DISCONNECTED. Security type None only (QEMU's default, auth=none)."""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Union


@dataclass
class ServerInit:
    width: int
    height: int
    name: str


class RFBError(Exception):
    pass


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise RFBError(f"server closed the connection (wanted {n} bytes, got {len(buf)})")
        buf += chunk
    return buf


class RFBClient:
    """``RFBClient(address).handshake()`` then ``close()``. ``address`` is a unix socket
    path or a (host, port) tuple."""

    def __init__(self, address: Union[str, tuple], timeout: float = 10.0):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.server_version = ""

    def handshake(self, shared: bool = True, update_request: bool = True) -> ServerInit:
        s = self.sock
        self.server_version = _recv_exact(s, 12).decode("ascii", "replace")
        if not self.server_version.startswith("RFB "):
            raise RFBError(f"not an RFB server: {self.server_version!r}")
        s.sendall(b"RFB 003.008\n")
        (count,) = _recv_exact(s, 1)
        if count == 0:
            (length,) = struct.unpack(">I", _recv_exact(s, 4))
            raise RFBError("server refused: " + _recv_exact(s, length).decode("utf-8", "replace"))
        types = _recv_exact(s, count)
        if 1 not in types:
            raise RFBError(f"server does not offer security type None (offers {list(types)})")
        s.sendall(b"\x01")
        (result,) = struct.unpack(">I", _recv_exact(s, 4))
        if result != 0:
            raise RFBError(f"security handshake failed ({result})")
        s.sendall(b"\x01" if shared else b"\x00")          # ClientInit
        width, height = struct.unpack(">HH", _recv_exact(s, 4))
        _recv_exact(s, 16)                                   # pixel format
        (nlen,) = struct.unpack(">I", _recv_exact(s, 4))
        name = _recv_exact(s, nlen).decode("utf-8", "replace")
        if update_request:
            # FramebufferUpdateRequest (non-incremental, whole screen)
            s.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        return ServerInit(width, height, name)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
