"""A curated list of models and variants (what the old ModelDownloadService kept in code), as data.

CATALOG_FILE is YAML or JSON (JSON is read as YAML): a list of entries, or {"entries": [...]}.
Every error names the file and the line, and stops the API from starting."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..errors import ApiError
from ..validation import validate_patterns, validate_repo_id, validate_revision

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_FIELDS = {"id", "model_id", "revision", "include", "description", "recommended"}


class CatalogError(RuntimeError):
    """A catalog file the API cannot use; the message names the file and line."""


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    model_id: str
    revision: str = "main"
    include: tuple[str, ...] | None = None
    description: str = ""
    recommended: bool = False

    def to_json(self) -> dict:
        d = asdict(self)
        d["include"] = list(self.include) if self.include else None
        return d


def _entry(data, prefix: str, line: int, lines: dict[str, int]) -> CatalogEntry:
    def fail(key: str, msg: str):
        return CatalogError(f"{prefix} line {lines.get(key, line)}: {msg}")
    if not isinstance(data, dict):
        raise fail("", "an entry must be a mapping with id and model_id.")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise fail(unknown[0], f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_FIELDS))}).")
    for key in ("id", "model_id"):
        if not isinstance(data.get(key), str):
            raise fail(key, f"{key} is required and must be a string.")
    if not _ID.match(data["id"]):
        raise fail("id", "id must be lower-case letters, digits, '.', '_' or '-' (64 at most).")
    if not isinstance(data.get("recommended", False), bool):
        raise fail("recommended", "recommended must be true or false.")
    if not isinstance(data.get("description", ""), str):
        raise fail("description", "description must be a string.")
    include = data.get("include")
    if include is not None and not (isinstance(include, str) or
                                    (isinstance(include, list) and all(isinstance(p, str) for p in include))):
        raise fail("include", "include must be a glob pattern or a list of them.")
    try:
        model_id = validate_repo_id(data["model_id"])
    except ApiError as e:
        raise fail("model_id", e.detail) from None
    try:
        revision = validate_revision(str(data.get("revision") or "main"))
    except ApiError as e:
        raise fail("revision", e.detail) from None
    try:
        patterns = validate_patterns(include, "include") if include is not None else None
    except ApiError as e:
        raise fail("include", e.detail) from None
    return CatalogEntry(data["id"], model_id, revision, tuple(patterns) if patterns else None,
                        data.get("description", ""), data.get("recommended", False))


def load_catalog(path: Path | None) -> list[CatalogEntry]:
    path = path or DEFAULT_CATALOG
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError(f"CATALOG_FILE {path}: cannot be read ({e}).") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise CatalogError(f"CATALOG_FILE {path} line {mark.line + 1 if mark else '?'}: "
                           f"{e.problem or e.context}.") from None
    finally:
        loader.dispose()
    nodes = root
    if isinstance(data, dict) and set(data) == {"entries"}:
        nodes = next(v for k, v in root.value if k.value == "entries")
        data = data["entries"]
    if not isinstance(data, list):
        raise CatalogError(f"CATALOG_FILE {path} line 1: expected a list of entries (or entries: [...]).")
    out, seen = [], {}
    for item, node in zip(data, nodes.value):
        line = node.start_mark.line + 1
        lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
        entry = _entry(item, f"CATALOG_FILE {path}", line, lines)
        if entry.id in seen:
            raise CatalogError(f"CATALOG_FILE {path} line {line}: id {entry.id!r} is already used on line "
                               f"{seen[entry.id]}.")
        seen[entry.id] = line
        out.append(entry)
    return out
