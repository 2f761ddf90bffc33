"""Moving a response body into the blob file: `read1` + `pwrite`, or `splice` where the kernel can.

On a plain-HTTP connection (a LAN mirror, a local Hub cache, the simulator) the bytes can go from
the socket to the file's page cache without passing through Python: socket -> pipe -> file with
splice(2). That saves the copy into user space, about a third of a download's kernel time on this
box, and with it CPU that a 2-core machine spends on receiving instead of hashing. TLS (the real
CDN) is decrypted in user space, so it always takes the `read1` path; so do chunked bodies and
kernels or file systems that refuse splice (the first refusal switches the worker back for good).
"""
from __future__ import annotations

import errno
import fcntl
import http.client
import os
import select
import socket
import ssl

PIPE_SIZE = 1 << 20          # the default /proc/sys/fs/pipe-max-size; smaller if refused
_SPLICE = getattr(os, "splice", None)


class SplicePipe:
    """One worker's pipe, reused for every response it splices."""

    def __init__(self):
        self.broken = False   # splice refused once: the worker reads with read1 from then on
        self._open()

    def _open(self) -> None:
        self.r, self.w = os.pipe()
        try:
            fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (OSError, AttributeError):
            pass   # the default 64 KiB still works, in more steps

    def reopen(self) -> None:
        """Bytes stuck in the pipe after an error would land in the next response's range."""
        self.close()
        self._open()

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


def spliceable(resp: http.client.HTTPResponse, sock: socket.socket | None, pipe: SplicePipe) -> bool:
    return (_SPLICE is not None and not pipe.broken and sock is not None
            and not isinstance(sock, ssl.SSLSocket) and resp.length is not None and not resp.chunked)


class BodyWriter:
    """Writes up to `want` bytes of one response body at `pos` of the file; returns the count
    (0: the connection closed early)."""

    def __init__(self, resp: http.client.HTTPResponse, sock: socket.socket | None, fd: int,
                 pipe: SplicePipe, timeout: float):
        self.resp, self.fd, self.pipe = resp, fd, pipe
        self.sock = sock if spliceable(resp, sock, pipe) else None
        self.timeout = timeout
        self._first = True

    def write(self, pos: int, want: int) -> int:
        if self.sock is not None and not self._first:
            try:
                return self._splice(pos, want)
            except OSError as e:
                self.pipe.reopen()
                if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self.pipe.broken = True   # this kernel or file system cannot: read1 from now on
                self.sock = None
        # The first read1 also takes the body bytes http.client pulled into its buffer with the
        # headers (at most 8 KiB, less than any read asked for): read1 returns the buffered bytes
        # when there are any, else reads the socket directly, so afterwards that buffer is empty
        # and the socket can be spliced.
        self._first = False
        data = self.resp.read1(want)
        if data:
            os.pwrite(self.fd, data, pos)
        return len(data)

    def _splice(self, pos: int, want: int) -> int:
        src = self.sock.fileno()
        poll = None
        while True:
            try:
                n = _SPLICE(src, self.pipe.w, want, flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
                break
            except BlockingIOError:
                # A Python socket with a timeout is non-blocking underneath: wait like recv would
                # (poll, not select: descriptors above 1023 are fine).
                if poll is None:
                    poll = select.poll()
                    poll.register(src, select.POLLIN)
                if not poll.poll(self.timeout * 1000):
                    raise TimeoutError("timed out") from None
        left = n
        while left:
            m = _SPLICE(self.pipe.r, self.fd, left, offset_dst=pos + n - left, flags=os.SPLICE_F_MOVE)
            if m <= 0:
                raise OSError(errno.EIO, "splice into the file wrote nothing")
            left -= m
        if self.resp.length is not None:
            self.resp.length -= n   # http.client's own count: finish() then closes the response
        return n
