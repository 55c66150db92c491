"""A stand-in for the daemon's remote-debug server (Dify → Plugins → Debug), on loopback.

A plugin started with `INSTALL_METHOD=remote` connects over TCP and sends, one JSON per
line: the handshake `{"type":"handshake","data":{"key":K}}`, its manifest declaration,
model declaration, asset chunks (base64) and `end`. From then on the connection carries
the same session protocol as stdio. The daemon answers a bad key with the line
`handshake failed, invalid key` and closes the connection; so does this stand-in.
"""

import base64
import json
import socket
import threading
import time

from tests.runtime.harness import HarnessError, SessionChannel

INVALID_KEY_REPLY = b"handshake failed, invalid key\n"
INVALID_HANDSHAKE_REPLY = b"handshake failed, invalid handshake message\n"


class DebugServer:
    """Listens on 127.0.0.1 and accepts plugin connections, checking their key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)

    @property
    def address(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"{host}:{port}"

    def accept(self, timeout: float) -> "RemotePluginConnection":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            return RemotePluginConnection(connection, self.key)
        raise HarnessError(f"no plugin connected to {self.address} within {timeout:g} s")

    def close(self) -> None:
        self._listener.close()

    def __enter__(self) -> "DebugServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class RemotePluginConnection(SessionChannel):
    """One plugin's connection: registration first, then sessions."""

    def __init__(self, connection: socket.socket, key: str) -> None:
        super().__init__()
        self.expected_key = key
        self.handshake: dict | None = None
        self.handshake_accepted = False
        self.rejected = False
        self.declarations: dict[str, object] = {}  # "manifest_declaration" → data, ...
        self.assets: dict[str, bytes] = {}
        self.registered = threading.Event()
        self._connection = connection
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # ---- reading ------------------------------------------------------------------------

    def _read(self) -> None:
        pending = b""
        try:
            while chunk := self._connection.recv(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._on_line(line.decode("utf-8", "replace"))
        except OSError:
            pass
        finally:
            self._transport_closed()

    def _on_line(self, line: str) -> None:
        if self.rejected:
            return  # the daemon ignores everything after a failed handshake
        if self.registered.is_set():
            self._receive_line(line)
            return
        try:
            message = json.loads(line)
            kind, data = message["type"], message["data"]
        except (ValueError, KeyError, TypeError):
            self._reject(INVALID_HANDSHAKE_REPLY)
            return
        if self.handshake is None:
            self._check_handshake(kind, data)
        elif kind == "asset_chunk":
            chunk = base64.b64decode(data["data"])
            self.assets[data["filename"]] = self.assets.get(data["filename"], b"") + chunk
        elif kind == "end":
            self.registered.set()
        else:
            self.declarations[kind] = data

    def _check_handshake(self, kind: str, data: dict) -> None:
        self.handshake = {"type": kind, "data": data}
        if kind == "handshake" and isinstance(data, dict) and data.get("key") == self.expected_key:
            self.handshake_accepted = True
        else:
            self._reject(INVALID_KEY_REPLY if kind == "handshake" else INVALID_HANDSHAKE_REPLY)

    def _reject(self, reply: bytes) -> None:
        self.rejected = True
        try:
            self._connection.sendall(reply)
            self._connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._connection.close()

    def wait_until_registered(self, timeout: float) -> None:
        """Registration done and the first heartbeat in: only then does the plugin listen.

        The SDK sends its registration before its request listener runs; a request sent
        in between is dropped without an answer.
        """
        if not (self.registered.wait(timeout) and self.heartbeat.wait(timeout)):
            raise HarnessError(
                f"registration did not finish within {timeout:g} s (handshake: {self.handshake}, "
                f"declarations: {sorted(self.declarations)}, heartbeat: {self.heartbeat.is_set()})"
            )

    # ---- writing ------------------------------------------------------------------------

    def _write_line(self, line: str) -> None:
        with self._write_lock:
            self._connection.sendall(line.encode() + b"\n")

    def close(self) -> None:
        try:
            self._connection.close()
        except OSError:
            pass
