"""Real local receivers for the notification tests: an HTTP server and a tiny
SMTP server, each in a thread on loopback, that can refuse for a while."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class HttpSink:
    """Records every POST; answers ``fail_status`` to the next ``fail_next`` requests."""

    url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    ok_status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [b for p, b in self.requests if not path or p == path]


@contextmanager
def http_sink() -> Iterator[HttpSink]:
    sink = HttpSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with sink.lock:
                if sink.fail_next > 0:
                    sink.fail_next -= 1
                    status = sink.fail_status
                else:
                    status = sink.ok_status
                    sink.requests.append((self.path, json.loads(body)))
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class SmtpSink:
    """Messages received (envelope sender, recipients, data); ``refuse_next``
    answers 421 to that many MAIL commands."""

    port: int = 0
    messages: list[tuple[str, list[str], str]] = field(default_factory=list)
    refuse_next: int = 0


@contextmanager
def smtp_sink(port: int = 0) -> Iterator[SmtpSink]:
    """A minimal SMTP server (RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)."""
    sink = SmtpSink()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    listener.settimeout(0.2)
    sink.port = listener.getsockname()[1]
    stop = threading.Event()

    def session(conn: socket.socket) -> None:
        reader = conn.makefile("rb")

        def say(line: str) -> None:
            conn.sendall(line.encode() + b"\r\n")

        say("220 localhost test SMTP")
        sender, rcpts = "", []
        while True:
            raw = reader.readline()
            if not raw:
                return
            cmd = raw.decode().strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250-localhost" if verb == "EHLO" else "250 localhost")
                if verb == "EHLO":
                    say("250 8BITMIME")
            elif verb == "MAIL":
                if sink.refuse_next > 0:
                    sink.refuse_next -= 1
                    say("421 try again later")
                    continue
                sender, rcpts = cmd.split(":", 1)[1].strip(), []
                say("250 ok")
            elif verb == "RCPT":
                rcpts.append(cmd.split(":", 1)[1].strip())
                say("250 ok")
            elif verb == "DATA":
                say("354 end with .")
                lines = []
                while True:
                    line = reader.readline()
                    if line in (b".\r\n", b".\n", b""):
                        break
                    lines.append(line.decode())
                sink.messages.append((sender, rcpts, "".join(lines)))
                say("250 queued")
            elif verb in ("RSET", "NOOP"):
                say("250 ok")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say("502 not implemented")

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                with suppress(OSError):
                    session(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        stop.set()
        listener.close()
        thread.join(5)
