"""The .env rewriter: minimal diff, dotenv/compose-equivalent, atomic, locked, injection-proof."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from dotenv import dotenv_values
from filelock import FileLock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import envfile
from api.envfile import read_value, restore, set_value, snapshot, validate_env_value, write_bytes_atomic
from api.errors import ApiError, Conflict, InvalidInput

KEY = "DEFAULT_MODEL"
ROOT = Path(__file__).resolve().parents[1]


def parsed(path: Path, interpolate: bool = False) -> dict:
    return dotenv_values(path, interpolate=interpolate)


def leftovers(folder: Path, name: str = ".env") -> list[str]:
    """Anything in the folder besides the file and its lock: i.e. stray temp files."""
    return sorted(p.name for p in folder.iterdir() if p.name not in {name, name + ".lock"})


# --------------------------------------------------------------------------- generated .env files

_model_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}/[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
_unquoted = st.from_regex(r"[A-Za-z0-9_./:@=,{}$-]{0,12}", fullmatch=True).filter(
    lambda s: not s.startswith(("'", '"')))
_single_body = st.lists(st.sampled_from(list("ab Z9#=$/.-\"") + ["\\'"]), max_size=8).map("".join)
_double_body = st.lists(st.sampled_from(list("ab Z9#=/.-'") + ['\\"', "\\\\", "\\n"]), max_size=8).map("".join)
_comment_text = st.sampled_from(["", "note", " DEFAULT_MODEL=evil/one", "export DEFAULT_MODEL='x'", "=#'\""])
_other_keys = st.sampled_from(["HF_HOME", "PORT", "DEFAULT_MODEL_2", "XDEFAULT_MODEL", "default_model", "A_1"])


@st.composite
def _value_text(draw, eol: str) -> str:
    kind = draw(st.sampled_from(["unquoted", "single", "double", "multiline", "empty", "empty_comment"]))
    if kind == "unquoted":
        text = draw(_unquoted)
    elif kind == "single":
        text = "'" + draw(_single_body) + "'"
    elif kind == "double":
        text = '"' + draw(_double_body) + '"'
    elif kind == "multiline":
        text = '"' + draw(_double_body) + eol + draw(_double_body) + '"'
    elif kind == "empty":
        return ""
    else:
        return " # just a comment"
    if draw(st.booleans()):
        text += draw(st.sampled_from(["  ", " # tail", "\t# tail =x"]))
    return text


@st.composite
def _binding(draw, key: str, eol: str) -> str:
    lead = draw(st.sampled_from(["", "  "]))
    export = draw(st.sampled_from(["", "export "]))
    if draw(st.integers(0, 9)) == 0:
        return lead + export + key  # a bare key, no `=`
    eq = draw(st.sampled_from(["=", "= ", " = "]))
    return lead + export + key + eq + draw(_value_text(eol))


@st.composite
def env_files(draw):
    """(lines, eol, final_newline): each line is one logical entry without its line ending."""
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    line = st.one_of(
        _comment_text.map(lambda t: "#" + t),
        st.sampled_from(["", "   "]),
        st.tuples(_other_keys).flatmap(lambda k: _binding(k[0], eol)),
        _binding(KEY, eol),
    )
    lines = draw(st.lists(line, max_size=12))
    return lines, eol, draw(st.booleans())


def _assemble(lines: list[str], eol: str, final_newline: bool) -> str:
    return "".join(line + eol for line in lines)[: None if final_newline or not lines else -len(eol)]


def _is_key_line(line: str) -> bool:
    return line.strip().removeprefix("export ").lstrip().startswith(KEY) and \
        line.strip().removeprefix("export ").lstrip()[len(KEY):len(KEY) + 1] in ("", "=", " ")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env_files(), _model_ids)
def test_rewrite_changes_only_the_winning_line(spec, new_value):
    lines, eol, final_newline = spec
    original = _assemble(lines, eol, final_newline)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ".env"
        path.write_bytes(original.encode())
        before = parsed(path)
        before_interp = parsed(path, interpolate=True)

        previous = set_value(path, new_value)

        assert previous == before.get(KEY)
        assert parsed(path) == {**before, KEY: new_value}
        assert parsed(path, interpolate=True) == {**before_interp, KEY: new_value}
        assert read_value(path) == new_value
        assert leftovers(Path(d)) == []
        new = path.read_bytes().decode()

    key_lines = [i for i, line in enumerate(lines) if _is_key_line(line)]
    if not key_lines:
        if not original:
            assert new == f"{KEY}={new_value}\n"
        elif original.endswith("\n"):
            assert new == original + f"{KEY}={new_value}{eol}"
        else:  # a file with no line ending at all gets LF
            sep = eol if eol in original else "\n"
            assert new == original + sep + f"{KEY}={new_value}"
        return
    i = key_lines[-1]
    last = i == len(lines) - 1
    prefix = "".join(line + eol for line in lines[:i])
    suffix = _assemble(lines[i + 1:], eol, final_newline)
    ending = eol if (not last or final_newline) else ""
    assert new.startswith(prefix) and new.endswith(suffix)
    rewritten = new[len(prefix): len(new) - len(suffix)]
    old_line = lines[i]
    assert rewritten.endswith(ending) and "\n" not in rewritten.removesuffix(ending)
    assert "\r" not in rewritten.removesuffix(ending)
    # Style kept: indentation, `export`, quote character and any inline comment.
    body = old_line.lstrip()
    assert rewritten.startswith(old_line[: len(old_line) - len(body)])
    assert rewritten.lstrip().startswith("export ") == body.startswith("export ")
    after_eq = body.split("=", 1)[1].lstrip() if "=" in body else ""
    if after_eq[:1] in ("'", '"'):
        assert f"{after_eq[0]}{new_value}{after_eq[0]}" in rewritten
    if "# tail" in old_line.split(eol)[-1]:
        assert "# tail" in rewritten


# --------------------------------------------------------------------------- readable examples

@pytest.mark.parametrize("before, after", [
    ("A=1\nDEFAULT_MODEL=old/m\nB=2\n", "A=1\nDEFAULT_MODEL=new/m\nB=2\n"),
    ("export DEFAULT_MODEL=\"old/m\" # keep\r\nB='x y'\r\n", "export DEFAULT_MODEL=\"new/m\" # keep\r\nB='x y'\r\n"),
    ("DEFAULT_MODEL='old/m'", "DEFAULT_MODEL='new/m'"),
    ("DEFAULT_MODEL=a/b\n# DEFAULT_MODEL=c/d\nDEFAULT_MODEL=e/f\n", "DEFAULT_MODEL=a/b\n# DEFAULT_MODEL=c/d\nDEFAULT_MODEL=new/m\n"),
    ("DEFAULT_MODEL= # empty\n", "DEFAULT_MODEL= new/m # empty\n"),
    ("DEFAULT_MODEL\n", "DEFAULT_MODEL=new/m\n"),
    ("  DEFAULT_MODEL = old/m   # c\n", "  DEFAULT_MODEL = new/m   # c\n"),
    ('X="a\nDEFAULT_MODEL=fake\n"\n', 'X="a\nDEFAULT_MODEL=fake\n"\nDEFAULT_MODEL=new/m\n'),
    ("A=1", "A=1\nDEFAULT_MODEL=new/m"),
    ("A=1\r\n", "A=1\r\nDEFAULT_MODEL=new/m\r\n"),
    ("", "DEFAULT_MODEL=new/m\n"),
    ("\ufeffDEFAULT_MODEL=old/m\n", "\ufeffDEFAULT_MODEL=new/m\n"),
])
def test_examples(tmp_path, before, after):
    path = tmp_path / ".env"
    path.write_bytes(before.encode())
    set_value(path, "new/m")
    assert path.read_bytes().decode() == after


def test_non_utf8_bytes_elsewhere_are_kept(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(b"# caf\xe9\nDEFAULT_MODEL=old/m\n")
    assert set_value(path, "new/m") == "old/m"
    assert path.read_bytes() == b"# caf\xe9\nDEFAULT_MODEL=new/m\n"


def test_other_key_and_missing_file(tmp_path):
    path = tmp_path / ".env"
    assert read_value(path) is None
    assert set_value(path, "Qwen/Qwen2.5-7B-Instruct") is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set_value(path, "8000", key="PORT") is None
    assert path.read_text() == "DEFAULT_MODEL=Qwen/Qwen2.5-7B-Instruct\nPORT=8000\n"


@pytest.mark.parametrize("bad_key", ["", "A B", "A=B", "A\nB", "1A", "export A"])
def test_bad_key_refused(tmp_path, bad_key):
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    with pytest.raises(InvalidInput) as e:
        set_value(path, "x", key=bad_key)
    assert e.value.code == "invalid_env_key"
    assert path.read_text() == "A=1\n"


def test_read_value_is_fresh(tmp_path):
    path = tmp_path / ".env"
    path.write_text("DEFAULT_MODEL=a/b\n")
    assert read_value(path) == "a/b"
    path.write_text("DEFAULT_MODEL='c/d' # x\n")
    assert read_value(path) == "c/d"


def test_symlinked_env_updates_target(tmp_path):
    real = tmp_path / "real.env"
    real.write_text("DEFAULT_MODEL=a/b\n")
    link = tmp_path / ".env"
    link.symlink_to(real)
    set_value(link, "c/d")
    assert link.is_symlink() and real.read_text() == "DEFAULT_MODEL=c/d\n"


def test_refuses_write_that_would_read_back_differently(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("A=1\nDEFAULT_MODEL=a/b\n")
    monkeypatch.setattr(envfile, "_rewrite_binding", lambda body, value: "BROKEN=" + value + "\n")
    with pytest.raises(ApiError) as e:
        set_value(path, "c/d")
    assert e.value.code == "env_rewrite_failed"
    assert path.read_text() == "A=1\nDEFAULT_MODEL=a/b\n"


# --------------------------------------------------------------------------- validation

BAD_VALUES = ["a\nb", "a\rb", "a=b", "a'b", 'a"b', "a`b", "$HOME", "${X}", "a#b", "a\\b", "a b", "a\tb",
              "a\x00b", "a\x1bb", "a\x7fb", "modèle/x", "a\u2028b", "", "x" * 513, None, 5, b"a/b"]


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_injection_refused_file_untouched(tmp_path, bad):
    path = tmp_path / ".env"
    original = b"# c\r\nexport A='1'\r\nDEFAULT_MODEL=ok/m"
    path.write_bytes(original)
    with pytest.raises(InvalidInput) as e:
        set_value(path, bad)
    assert e.value.code == "invalid_env_value"
    assert path.read_bytes() == original
    assert leftovers(tmp_path) == []


@given(st.text(min_size=1, max_size=20).filter(
    lambda s: any(c in "\n\r='\"`$#\\" or c.isspace() or not (0x21 <= ord(c) <= 0x7e) for c in s)))
def test_any_dangerous_char_is_refused(value):
    with pytest.raises(InvalidInput):
        validate_env_value(value)


@pytest.mark.parametrize("good", ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B", "a", "x" * 512])
def test_model_ids_accepted(good):
    assert validate_env_value(good) == good


# --------------------------------------------------------------------------- file metadata

def test_mode_and_owner_preserved(tmp_path):
    path = tmp_path / ".env"
    path.write_text("DEFAULT_MODEL=a/b\n")
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 1234, 2345)
    set_value(path, "c/d")
    st_ = path.stat()
    assert stat.S_IMODE(st_.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st_.st_uid, st_.st_gid) == (1234, 2345)


# --------------------------------------------------------------------------- crash safety

@pytest.mark.parametrize("victim", ["replace", "fsync"])
def test_crash_before_replace_leaves_original(tmp_path, monkeypatch, victim):
    path = tmp_path / ".env"
    original = b"A=1\nDEFAULT_MODEL=a/b\n"
    path.write_bytes(original)

    def boom(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, victim, boom)
    with pytest.raises(OSError, match="simulated crash"):
        set_value(path, "c/d")
    with pytest.raises(OSError, match="simulated crash"):
        write_bytes_atomic(path, b"junk")
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- snapshot / rollback

def test_snapshot_and_restore(tmp_path):
    path = tmp_path / ".env"
    original = b"# c\r\nDEFAULT_MODEL='a/b'\r\nX=1"
    path.write_bytes(original)
    os.chmod(path, 0o644)
    snap = snapshot(path)
    set_value(path, "c/d")
    restore(path, snap)
    assert path.read_bytes() == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o644

    missing = tmp_path / "other.env"
    assert snapshot(missing) is None
    set_value(missing, "c/d")
    restore(missing, None)
    assert not missing.exists()
    restore(missing, None)  # idempotent
    assert leftovers(tmp_path, ".env") == ["other.env.lock"] or leftovers(tmp_path, ".env") == []


# --------------------------------------------------------------------------- locking

def test_lock_timeout_is_a_conflict(tmp_path):
    path = tmp_path / ".env"
    path.write_text("DEFAULT_MODEL=a/b\n")
    with FileLock(f"{path}.lock"):
        with pytest.raises(Conflict) as e:
            set_value(path, "c/d", lock_timeout=0.05)
        assert e.value.code == "env_locked"
        with pytest.raises(Conflict):
            write_bytes_atomic(path, b"x", lock_timeout=0.05)
    assert path.read_text() == "DEFAULT_MODEL=a/b\n"


_WORKER = """
import sys
from pathlib import Path
from api.envfile import set_value
path, proc, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sys.stdin.readline()  # start signal: all workers begin together
for j in range(n):
    set_value(path, f"proc{proc}/m{j}")
    set_value(path, "1", key=f"P{proc}_{j}")
"""


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / ".env"
    base = "# header\r\nexport HF_HOME='/data/hf'\r\nDEFAULT_MODEL=\"start/m\"\r\nPORT=8000\r\n"
    path.write_bytes(base.encode())
    n_threads, n_procs, per_proc = 50, 4, 5

    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), str(p), str(per_proc)],
                              cwd=ROOT, stdin=subprocess.PIPE, text=True) for p in range(n_procs)]
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            barrier.wait()
            set_value(path, f"thread/m{i}")
            set_value(path, "1", key=f"T{i}")  # a distinct key per writer exposes any lost update
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_threads)]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.stdin.close()
        assert p.wait(timeout=120) == 0
    assert errors == []

    written = {f"thread/m{i}" for i in range(n_threads)} | {f"proc{p}/m{per_proc - 1}" for p in range(n_procs)}
    values = parsed(path)
    assert values[KEY] in written
    expected_keys = {"HF_HOME", "PORT", KEY} | {f"T{i}" for i in range(n_threads)} \
        | {f"P{p}_{j}" for p in range(n_procs) for j in range(per_proc)}
    assert set(values) == expected_keys
    assert values["HF_HOME"] == "/data/hf" and values["PORT"] == "8000"
    text = path.read_bytes().decode()
    assert text.startswith("# header\r\nexport HF_HOME='/data/hf'\r\nDEFAULT_MODEL=\"")
    assert "\n" not in text.replace("\r\n", "") and text.endswith("\r\n")
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- docker compose

def _compose_cmd() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        try:
            if subprocess.run([*cmd, "version"], capture_output=True, timeout=60).returncode == 0:
                return cmd
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def test_docker_compose_sees_new_value(tmp_path):
    cmd = _compose_cmd()
    if cmd is None:
        if os.environ.get("CI"):
            pytest.fail("no docker compose available in CI")
        pytest.skip("no docker compose available")
    (tmp_path / "compose.yml").write_text(
        "services:\n  vllm:\n    image: busybox\n"
        "    command: [\"serve\", \"${DEFAULT_MODEL}\", \"${HF_HOME}\", \"${PORT}\"]\n")
    env = tmp_path / ".env"
    env.write_bytes(b"# llm box\r\nexport HF_HOME='/data/hf cache'\r\n"
                    b"DEFAULT_MODEL=\"old/m\" # current\r\n\r\nPORT=8000")
    set_value(env, "Qwen/Qwen2.5-7B-Instruct")
    clean = {k: v for k, v in os.environ.items() if k not in {"DEFAULT_MODEL", "HF_HOME", "PORT"}}
    out = subprocess.run([*cmd, "--env-file", str(env), "-f", str(tmp_path / "compose.yml"), "config"],
                         cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "- Qwen/Qwen2.5-7B-Instruct" in out.stdout
    assert "- /data/hf cache" in out.stdout and "old/m" not in out.stdout
