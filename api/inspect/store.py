"""Inspections cached per repo@commit in the state database: a commit never changes, so its
inspection is valid forever; the newest one per revision answers while the Hub is down."""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from ..jobs.store import now_iso


class InspectionStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        with closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS inspections (repo_id TEXT NOT NULL, commit_sha TEXT NOT NULL, "
                       "revision TEXT, data TEXT NOT NULL, created_at TEXT, PRIMARY KEY (repo_id, commit_sha))")
            db.execute("CREATE INDEX IF NOT EXISTS inspections_rev ON inspections(repo_id, revision, created_at)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get(self, repo_id: str, commit: str) -> dict | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT data FROM inspections WHERE repo_id = ? AND commit_sha = ?",
                             (repo_id, commit)).fetchone()
        return json.loads(row[0]) if row else None

    def latest(self, repo_id: str, revision: str) -> dict | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT data FROM inspections WHERE repo_id = ? AND (revision = ? OR commit_sha = ?) "
                             "ORDER BY created_at DESC LIMIT 1", (repo_id, revision, revision)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, repo_id: str, revision: str, commit: str, data: dict) -> None:
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO inspections VALUES (?, ?, ?, ?, ?)",
                       (repo_id, commit, revision, json.dumps(data), now_iso()))
