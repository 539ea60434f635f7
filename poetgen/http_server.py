"""How `poetgen serve` runs its app: the listening sockets, uvicorn with a deadline on each request's
headers, and the stop on Ctrl-C or SIGTERM.

No request is read here (poetgen.serve is the app), and no model step is taken.
"""

from __future__ import annotations

import contextlib
import json
import threading

from poetgen.batching import BatchOptions
from poetgen.errors import BadInput


def listening_sockets(host: str, port: int) -> list:
    """Sockets bound to every address `host` resolves to (localhost: ::1 and 127.0.0.1, as uvicorn's own
    binding did), listening; or BadInput with the reason. Checked before the model loads, so a port in
    use or an unknown host is one line (uvicorn's own bind failed after loading, with exit status 3)."""
    import socket

    sockets = []
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, address in dict.fromkeys((info[0], info[4]) for info in found):   # each once, in order
            sockets.append(socket.create_server(address, family=family, backlog=2048))   # IPv6 ones v6-only
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise BadInput(f"cannot listen on {host}:{port}: {error.strerror or error}", field="port") from None
    return sockets


HEADERS_S = 10   # seconds a request's headers (a few hundred bytes) may take, at most (--request-timeout if less)


def header_deadline(seconds: float):
    """uvicorn's httptools protocol, answering 408 and closing a connection whose request headers have
    not all come within `seconds` of the connection, or of the request's first byte on a kept-alive one.
    uvicorn times out neither: a client that sent nothing, or part of its headers, held its connection
    (a file descriptor) for as long as it liked. None without httptools (uvicorn then reads with h11)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None
    body = json.dumps({"detail": [{"field": "request", "message": f"the request headers did not arrive "
                                                                     f"within {seconds:g} s"}]}).encode()
    late = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body))

    class HeaderDeadline(HttpToolsProtocol):
        headers_due = None   # the timer that cuts the connection off unless the headers come first

        def connection_made(self, transport):
            super().connection_made(transport)
            self.await_headers()

        def on_message_begin(self):
            super().on_message_begin()
            self.await_headers()

        def on_headers_complete(self):
            self.headers_came()
            super().on_headers_complete()

        def connection_lost(self, exc):
            self.headers_came()
            super().connection_lost(exc)

        def await_headers(self):
            if self.headers_due is None:
                self.headers_due = self.loop.call_later(seconds, self.headers_late)

        def headers_came(self):
            if self.headers_due is not None:
                self.headers_due.cancel()
                self.headers_due = None

        def headers_late(self):
            self.headers_due = None
            if self.cycle is not None and not self.cycle.response_complete:
                self.await_headers()   # a request pipelined behind one still being answered: after that one
                return
            self.transport.write(late)
            self.transport.close()

    return HeaderDeadline


def run_server(app, sockets: list, timeout_s: float = BatchOptions.timeout_s) -> None:
    """Serve `app` on the listening `sockets` until Ctrl-C or SIGTERM: requests in flight finish, for at
    most `timeout_s` (the requests' own limit) and a few seconds more (a second Ctrl-C or SIGTERM cuts them
    short, each answered 503), then KeyboardInterrupt, which the command reports as `interrupted` (exit
    130). uvicorn re-raises the signals it caught once it has stopped, where asyncio's own handler
    swallowed them (exit 0)."""
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        signalled = False

        def handle_exit(self, sig, frame):
            if self.signalled:   # uvicorn forces only a second SIGINT; a second SIGTERM does too
                self.force_exit = True
            self.signalled = True
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():   # only the main thread gets them
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    server = Server(uvicorn.Config(app, log_level="warning", http=header_deadline(min(HEADERS_S, timeout_s)) or "auto",
                                   timeout_graceful_shutdown=timeout_s + STOP_GRACE_S))
    server.run(sockets=sockets)
    if server.signalled:
        raise KeyboardInterrupt


STOP_GRACE_S = 5   # seconds a stop waits beyond the requests' own limit before it cancels what is left
