"""A database outage as the bot meets one: a TCP relay on loopback in front of the test PostgreSQL that an
operator's network can drop. `cut()` closes every open connection and refuses new ones, as a server that
went away does; `restore()` lets connections through again."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

from sqlalchemy.engine import make_url


class DatabaseRelay:
    def __init__(self, target_url: str) -> None:
        url = make_url(target_url)
        self._target = (url.host or "127.0.0.1", url.port or 5432)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.url = url.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._down = False
        self._closing = False
        self._thread = threading.Thread(target=self._accept, name="database-relay", daemon=True)

    def start(self) -> DatabaseRelay:
        self._thread.start()
        return self

    def cut(self) -> None:
        """The database is away: every connection drops, and new ones are closed as soon as they open."""
        with self._lock:
            self._down = True
            for sock in list(self._open):
                _close(sock)
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def close(self) -> None:
        self._closing = True
        self.cut()
        _close(self._listener)
        self._thread.join(5)

    def __enter__(self) -> DatabaseRelay:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                _close(client)
                continue
            try:
                server = socket.create_connection(self._target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, server))
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(client, selectors.EVENT_READ, server)
            selector.register(server, selectors.EVENT_READ, client)
            while True:
                for key, _ in selector.select(timeout=0.5):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
                with self._lock:
                    if client not in self._open:
                        return
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            with self._lock:
                self._open.discard(client)
                self._open.discard(server)
            _close(client)
            _close(server)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
