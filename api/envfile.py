"""Safe, atomic, minimal-diff rewriting of one key in a docker-compose `.env` file.

Only the bytes of the key's value change; every other byte (comments, order, quoting, `export`,
CRLF, final newline) is kept. See docs/envfile.md for why the folder, not the file, is mounted.
"""
from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from filelock import FileLock, Timeout

from .errors import ApiError, Conflict, InvalidInput

DEFAULT_KEY = "DEFAULT_MODEL"
ARGS_KEY = "INFERENCE_ARGS"   # the serve profile's vLLM arguments; the compose command expands them
VARIANT_KEY = "DEFAULT_MODEL_VARIANT"   # the GGUF variant served as DEFAULT_MODEL:variant; empty: the repo
LOCK_TIMEOUT = 10.0
NEW_FILE_MODE = 0o600

# An allowlist rather than a denylist: printable ASCII minus everything that means something to
# dotenv or compose (quotes, `$` interpolation, `#` comments, `=`, backslash escapes, whitespace).
_SAFE_VALUE = re.compile(r"[!%&()*+,\-./0-9:;<>?@A-Z\[\]^_a-z{|}~]{1,512}")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# A list of command-line words (INFERENCE_ARGS): safe words joined by single spaces, written
# double-quoted. No quotes, `$`, `#`, `=`, backslash or glob characters, so neither dotenv, compose
# nor the shell that expands it word by word can read more into it.
_SAFE_WORDS = re.compile(r"(?:[A-Za-z0-9_.:/,+@%-]{1,256}(?: [A-Za-z0-9_.:/,+@%-]{1,256}){0,63})?")
# `[export ]KEY<ws>=<ws>` as python-dotenv reads it (dotenv/parser.py), quoted key included.
_HEAD = re.compile(r"(?:export[^\S\r\n]+)?(?:'[^']+'|[^=#\s]+)[^\S\r\n]*(=[^\S\r\n]*)?")
_QUOTED = {"'": re.compile(r"'(?:\\.|[^'\\])*'", re.S), '"': re.compile(r'"(?:\\.|[^"\\])*"', re.S)}


def validate_env_value(value: object) -> str:
    if not isinstance(value, str) or not _SAFE_VALUE.fullmatch(value):
        raise InvalidInput(
            "Value for the .env file must be 1-512 printable ASCII characters without whitespace, "
            "quotes, '=', '$', '#' or backslash.",
            code="invalid_env_value",
        )
    return value


def validate_env_words(value: object) -> str:
    if not isinstance(value, str) or not _SAFE_WORDS.fullmatch(value):
        raise InvalidInput("Command-line words for the .env file must be safe words (letters, digits and "
                           "._:/,+@%-) separated by single spaces.", code="invalid_env_value")
    return value
def _is_mount_point(path: Path) -> bool:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    # Field 5 is the mount point, with spaces and the like written as octal escapes.
    points = {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in lines if line.strip()}
    return str(path) in points


def check_writable(path: Path) -> None:
    """Refuse (503 `env_file_not_writable`) what a switch could not rewrite, before it starts: a
    directory, a read-only file (its mode says so even to root), a folder where the temporary file
    and the lock cannot be created (read-only mount, no permission, missing)."""
    real = _real(path)
    problem = None
    if real.is_dir():
        problem = "is a directory"
    elif real.exists() and (not real.stat().st_mode & 0o222 or not os.access(real, os.W_OK)):
        problem = "is read-only"
    elif _is_mount_point(real):
        problem = "is bind-mounted as a single file (a rename onto it fails with EBUSY)"
    else:
        try:
            fd, probe = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".probe")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            problem = f"cannot be replaced in its folder ({e.strerror or type(e).__name__})"
    if problem:
        raise ApiError(f"ENV_FILE {path} {problem}: a switch could not rewrite {DEFAULT_KEY}; nothing was "
                       "changed. Mount the folder holding it read-write (docs/envfile.md).",
                       code="env_file_not_writable", status=503)


def _parse(text: str) -> dict[str, str | None]:
    # Universal newlines and no BOM, exactly as dotenv_values(path) reads the file. No
    # interpolation: we report what is literally written, not what the API process's own
    # environment would expand it to.
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return dotenv_values(stream=io.StringIO(text), interpolate=False)


def read_value(path: Path, key: str = DEFAULT_KEY) -> str | None:
    """The key's value as python-dotenv parses it, read fresh from disk every call."""
    raw = snapshot(path)
    return None if raw is None else _parse(raw.decode("utf-8", errors="surrogateescape")).get(key)


def _lock(path: Path, timeout: float) -> FileLock:
    return FileLock(f"{path}.lock", timeout=timeout)


def _real(path: Path) -> Path:
    # Rewrite the target of a symlinked .env; replacing the link itself would detach it.
    return Path(os.path.realpath(path))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic_unlocked(path: Path, data: bytes) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), (st.st_mode & 0o7777) if st else NEW_FILE_MODE)
            if st and os.geteuid() == 0:
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # Without this the rename itself may not survive a power cut.
    _fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
    """Replace the whole file with `data` atomically, under the file's lock."""
    update_atomic(path, lambda _old: data, lock_timeout=lock_timeout)


def snapshot(path: Path) -> bytes | None:
    """The file's exact bytes (None if it does not exist), for `restore` after a failed switch."""
    try:
        return _real(path).read_bytes()
    except FileNotFoundError:
        return None


def restore(path: Path, previous: bytes | None, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
    """Put a `snapshot` back byte for byte; a None snapshot means the file did not exist."""
    if previous is not None:
        write_bytes_atomic(path, previous, lock_timeout=lock_timeout)
        return
    path = _real(path)
    try:
        with _lock(path, lock_timeout):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            _fsync_dir(path.parent)
    except Timeout:
        raise Conflict(f"{path.name} is locked by another writer.", code="env_locked") from None


def _quoted(value: str) -> str:
    # Words with spaces need quotes; an empty value stays bare (`KEY=`).
    return f'"{value}"' if " " in value else value


def _rewrite_binding(body: str, value: str) -> str:
    """`body` is one binding without leading whitespace; swap only its value token."""
    head = _HEAD.match(body)
    if head is None:  # cannot happen for a binding dotenv accepted; the caller's check catches it
        return body
    pos = head.end()
    if head.group(1) is None:  # bare `KEY` (no `=`): give it one right after the key
        key_end = len(body[:pos].rstrip())
        return body[:key_end] + "=" + _quoted(value) + body[key_end:]
    rest = body[pos:]
    quote = rest[:1]
    if quote in _QUOTED:
        m = _QUOTED[quote].match(rest)
        if m:
            return body[:pos] + quote + value + quote + rest[m.end():]
    line = re.match(r"[^\r\n]*", rest).group(0)
    if head.group(1) != "=" and line.startswith("#"):
        # `KEY= # comment` is an empty value plus a comment; keep the comment a comment.
        return body[:pos] + _quoted(value) + " " + rest
    # Unquoted value ends before whitespace+`#` (an inline comment) and trailing whitespace.
    cut = re.search(r"\s+#", line)
    old = (line[: cut.start()] if cut else line).rstrip()
    return body[:pos] + _quoted(value) + rest[len(old):]


def _render(text: str, key: str, value: str) -> str:
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    text = text[len(bom):]
    offset, target = 0, None
    for binding in parse_stream(io.StringIO(text, newline="")):
        if binding.key == key and not binding.error:
            target = (offset, binding.original.string)  # the last one wins, as in dotenv and compose
        offset += len(binding.original.string)
    if target is None:
        first = re.search(r"\r\n|\n|\r", text)
        eol = first.group(0) if first else "\n"
        if not text:
            return bom + f"{key}={_quoted(value)}{eol}"
        sep = "" if text.endswith(("\n", "\r")) else eol
        return bom + text + sep + f"{key}={_quoted(value)}" + (eol if not sep else "")
    start, original = target
    lead = len(original) - len(original.lstrip())
    start += lead
    end = start + len(original) - lead
    return bom + text[:start] + _rewrite_binding(text[start:end], value) + text[end:]


def update_atomic(path: Path, render, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
    """Read-modify-write under the file's lock: `render(old bytes or None) -> new bytes`."""
    path = _real(path)
    try:
        with _lock(path, lock_timeout):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                raw = None
            _write_atomic_unlocked(path, render(raw))
    except Timeout:
        raise Conflict(f"{path.name} is locked by another writer.", code="env_locked") from None


def set_value(path: Path, value: str, key: str = DEFAULT_KEY, *,
              lock_timeout: float = LOCK_TIMEOUT) -> str | None:
    """Set `key` to `value`, changing nothing else in the file. Returns the previous value."""
    validate_env_value(value)
    return set_values(path, {key: value}, lock_timeout=lock_timeout)[key]


def set_values(path: Path, values: dict[str, str], *, lock_timeout: float = LOCK_TIMEOUT) -> dict[str, str | None]:
    """Set several keys in one atomic write (a model and its arguments change together).

    Values must pass `validate_env_value`, or `validate_env_words` (written double-quoted); an
    empty value is written as `KEY=`. Returns each key's previous value."""
    for key, value in values.items():
        if not _KEY.fullmatch(key):
            raise InvalidInput(f"Invalid .env key {key[:40]!r}.", code="invalid_env_key")
        if value != "" and not _SAFE_VALUE.fullmatch(value if isinstance(value, str) else ""):
            validate_env_words(value)
    previous: dict[str, str | None] = {}

    def render(raw: bytes | None) -> bytes:
        # surrogateescape round-trips any stray non-UTF-8 bytes in other lines untouched.
        text = (raw or b"").decode("utf-8", errors="surrogateescape")
        before = _parse(text)
        new_text = text
        for key, value in values.items():
            new_text = _render(new_text, key, value)
        # Refuse rather than write something that reads back differently.
        if _parse(new_text) != {**before, **values}:
            raise ApiError(f"Could not rewrite {', '.join(values)} in {_real(path).name} without changing "
                           "other entries; edit it by hand.", code="env_rewrite_failed", status=500)
        previous.update({key: before.get(key) for key in values})
        return new_text.encode("utf-8", errors="surrogateescape")

    update_atomic(path, render, lock_timeout=lock_timeout)
    return previous
