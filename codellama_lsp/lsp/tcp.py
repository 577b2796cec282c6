"""`--tcp`: LSP on a loopback port, for one editor at a time, read as stdio is.

A TCP port is open to every program on the machine, and a loopback one to every web page the
user visits (a page can POST text to 127.0.0.1). So the server listens on loopback only and
serves one connection at a time: others wait their turn until one has sent `initialize`, and
are closed at once from then on, so no connection ever sees another's replies or documents.
Each connection is read by the stdio `FrameReader`, with its limits, which also ends a
connection that starts like HTTP. A connection that ends before `initialize` (a port scan, a
refused web page) leaves the server serving the next; the end of the connection that
initialized ends the server, as the end of stdin does: one server, one editor session.

A connection that does not send `initialize` within `INITIALIZE_TIMEOUT_S` of its turn is closed,
and one that waited that long without sending a byte is closed unserved: a silent connection
cannot hold the one slot forever, nor a crowd of them a turn each. Running out of descriptors
(EMFILE, from a crowd of connections) pauses accepting until some end, never stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import queue
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async

from codellama_lsp.lsp.framing import FrameReader
from codellama_lsp.lsp.server import CodeLlamaServer

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
_NAMED_LOOPBACK = {"localhost": "127.0.0.1"}
INITIALIZE_TIMEOUT_S = 10.0
"""An editor sends `initialize` as soon as it connects: a connection that has not is not one."""
ACCEPT_RETRY_S = 0.1
"""The pause after a failed accept (out of descriptors) before the next try."""


def loopback_address(spec: str) -> tuple[str, int]:
    """The (host, port) of `--tcp [HOST:]PORT`; ValueError unless HOST is a loopback address."""
    host, _, port = spec.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--tcp expects [HOST:]PORT, got {spec!r}")
    host = host.removeprefix("[").removesuffix("]") or DEFAULT_HOST
    host = _NAMED_LOOPBACK.get(host, host)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"--tcp listens on loopback only (127.0.0.1, ::1, localhost): {host!r}")
    return host, int(port)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (OSError if the port is taken); says on stderr which port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family)
    print(f"codellama-lsp: listening on {host}:{listener.getsockname()[1]}", file=sys.stderr)
    sys.stderr.flush()
    return listener


def serve_tcp(server: CodeLlamaServer, listener: socket.socket) -> None:
    """Serve connections one at a time until one that sent `initialize` ends."""
    handed: queue.Queue[tuple[socket.socket, float]] = queue.Queue()

    def accept() -> None:
        failing = False
        while True:
            try:
                connection, _ = listener.accept()
            except OSError as error:  # EMFILE: waiting connections hold every descriptor
                if not failing:
                    log.warning("could not accept a connection, retrying: %s", error)
                failing = True
                time.sleep(ACCEPT_RETRY_S)
                continue
            failing = failing and not handed.empty()  # one warning per crowd of connections
            if server.protocol.initialize_received:
                log.warning("closed a second connection: one editor at a time")
                connection.close()
            else:  # waits its turn behind a connection that may yet end before initialize
                handed.put((connection, time.monotonic() + INITIALIZE_TIMEOUT_S))

    threading.Thread(target=accept, name="codellama-tcp-accept", daemon=True).start()
    while True:
        connection, deadline = handed.get()
        with connection:
            if time.monotonic() >= deadline and not has_sent(connection):
                log.warning("closed a connection that sent nothing in %gs", INITIALIZE_TIMEOUT_S)
                continue
            serve_connection(server, connection)
        if server.protocol.initialize_received:
            return
        log.warning("a connection ended before initialize: serving the next")


def has_sent(connection: socket.socket) -> bool:
    """Whether bytes from the peer wait to be read: not nothing yet, not its end."""
    connection.setblocking(False)
    try:
        return bool(connection.recv(1, socket.MSG_PEEK))
    except OSError:  # BlockingIOError: nothing yet; or reset by the peer
        return False
    finally:
        connection.setblocking(True)


def end_unless_initialized(server: CodeLlamaServer, connection: socket.socket) -> None:
    """End a connection that has not sent `initialize`: its reader sees the end of input."""
    if not server.protocol.initialize_received:
        log.warning("closed a connection without initialize in %gs", INITIALIZE_TIMEOUT_S)
        with contextlib.suppress(OSError):  # it ended already
            connection.shutdown(socket.SHUT_RDWR)


def serve_connection(server: CodeLlamaServer, connection: socket.socket) -> None:
    """Read and answer one connection until it ends, as `start_io` does for stdio."""
    incoming, outgoing = connection.makefile("rb"), connection.makefile("wb")
    reader = FrameReader(incoming)
    server.protocol.set_writer(StdoutWriter(outgoing))
    watchdog = threading.Timer(INITIALIZE_TIMEOUT_S, end_unless_initialized, (server, connection))
    watchdog.daemon = True  # `exit` ends the process without waiting for it
    watchdog.start()
    with incoming, ThreadPoolExecutor(1, thread_name_prefix="codellama-tcp-read") as pool:
        try:
            asyncio.run(
                run_async(
                    stop_event=threading.Event(),
                    reader=StdinAsyncReader(reader, pool),  # type: ignore[arg-type]
                    protocol=server.protocol,
                    logger=log,
                    error_handler=server.report_server_error,
                )
            )
        except OSError as error:  # reset by the peer, or written to after it left
            log.info("the connection ended: %s", error)
    watchdog.cancel()
    watchdog.join()  # before the socket closes: it must not shut down a reused descriptor
    with contextlib.suppress(OSError):  # a flush to a peer that left
        outgoing.close()
    with contextlib.suppress(OSError):  # the socket closes only once its files do: end it now
        connection.shutdown(socket.SHUT_RDWR)
