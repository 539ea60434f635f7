"""How `poetgen serve` runs its app: the listening sockets, uvicorn, and the stop on Ctrl-C or SIGTERM.

No request is read here (poetgen.serve is the app), and no model step is taken.
"""

from __future__ import annotations

import contextlib
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

    server = Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=timeout_s + STOP_GRACE_S))
    server.run(sockets=sockets)
    if server.signalled:
        raise KeyboardInterrupt


STOP_GRACE_S = 5   # seconds a stop waits beyond the requests' own limit before it cancels what is left
