"""api/download/body.py on real sockets: a body spliced from a plain-HTTP socket into a file lands
byte for byte (including the bytes http.client buffered with the headers), a stall times out, and
chunked or refused cases take the read1 path. A raw TCP server sends exactly what each case needs."""
from __future__ import annotations

import http.client
import os
import socket
import threading

import pytest

from api.download.body import BodyWriter, SplicePipe

BODY = os.urandom(3 << 20) + b"tail"


def _server(payload: bytes, then_stall: bool = False):
    srv = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def run():
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)                    # the request
            conn.sendall(payload)
            if then_stall:
                done.wait(10)                   # keep the connection open, send nothing more
    threading.Thread(target=run, daemon=True).start()
    return srv, done


def _fetch(payload: bytes, size: int, tmp_path, *, broken=False, then_stall=False, timeout=5.0):
    srv, done = _server(payload, then_stall)
    conn = http.client.HTTPConnection("127.0.0.1", srv.getsockname()[1], timeout=timeout)
    pipe = SplicePipe()
    pipe.broken = broken
    fd = os.open(tmp_path / "blob", os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, size)
    try:
        conn.request("GET", "/blob")
        resp = conn.getresponse()
        body = BodyWriter(resp, conn.sock, fd, pipe, timeout)
        spliced_at_start = body.sock is not None
        pos = 0
        while pos < size:
            n = body.write(pos, min(1 << 20, size - pos))
            if not n:
                break
            pos += n
        return pos, (tmp_path / "blob").read_bytes(), resp, spliced_at_start, body
    finally:
        done.set()
        os.close(fd)
        pipe.close()
        conn.close()
        srv.close()


def _head(length: int, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


def test_a_plain_http_body_is_spliced_byte_for_byte_including_what_came_with_the_headers(tmp_path):
    # Headers and the first body bytes in one send: http.client buffers part of the body.
    pos, data, resp, spliced, body = _fetch(_head(len(BODY)) + BODY, len(BODY), tmp_path)
    assert spliced and body.sock is not None, "a plain-HTTP socket with a length is spliced"
    assert pos == len(BODY) and data == BODY
    assert resp.length == 0   # http.client's count followed, so the response can be closed for reuse
    assert resp.read() == b"" and resp.isclosed()


def test_a_splice_that_waits_longer_than_the_stall_timeout_raises_timeout(tmp_path):
    with pytest.raises(TimeoutError):
        _fetch(_head(len(BODY)) + BODY[:100_000], len(BODY), tmp_path, then_stall=True, timeout=0.5)


def test_a_connection_closed_early_writes_what_arrived_and_then_zero(tmp_path):
    pos, data, *_ = _fetch(_head(len(BODY)) + BODY[:200_000], len(BODY), tmp_path)
    assert pos == 200_000 and data[:pos] == BODY[:pos]


def test_chunked_bodies_and_refused_splice_take_the_read1_path(tmp_path):
    chunked = _head(0, "Transfer-Encoding: chunked\r\n").replace(b"Content-Length: 0\r\n", b"")
    chunked += b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (BODY[:1 << 20], BODY[1 << 20:])) + b"0\r\n\r\n"
    pos, data, _, spliced, _ = _fetch(chunked, len(BODY), tmp_path)
    assert not spliced and pos == len(BODY) and data == BODY
    pos, data, _, spliced, _ = _fetch(_head(len(BODY)) + BODY, len(BODY), tmp_path, broken=True)
    assert not spliced and pos == len(BODY) and data == BODY
