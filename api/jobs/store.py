"""SQLite job table: the queue's persistent state and the audit log of every job kind."""
from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

COLUMNS = {
    "job_id": "TEXT PRIMARY KEY", "kind": "TEXT NOT NULL", "model_id": "TEXT", "revision": "TEXT",
    "status": "TEXT NOT NULL", "bytes_downloaded": "INTEGER DEFAULT 0", "bytes_total": "INTEGER DEFAULT 0",
    "files_done": "INTEGER DEFAULT 0", "files_total": "INTEGER DEFAULT 0", "error": "TEXT",
    "error_code": "TEXT", "attempts": "INTEGER DEFAULT 0", "created_at": "TEXT", "started_at": "TEXT",
    "completed_at": "TEXT", "callback_url": "TEXT", "params": "TEXT", "plan": "TEXT", "result": "TEXT",
    "webhook": "TEXT", "seq": "INTEGER",
}
JSON_COLUMNS = ("params", "plan", "result", "webhook")
ACTIVE = ("queued", "downloading", "verifying", "paused", "running")
FINAL = ("complete", "failed", "cancelled")
MEMORY_ROWS = 4096   # rows kept for reads by id (the running and recent jobs); older ones are read from the file


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Conn:
    """Holds one thread's connection (sqlite3 connections take no weak references)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass

    __del__ = close


class JobStore:
    """One SQLite connection per thread: in WAL mode readers never wait for a writer, so a progress
    request is not held up by a job's write stalled behind the disk's writeback of model bytes.

    Reads by id and "the newest job of a kind (and model)" are answered from memory as well: while
    downloads write gigabytes, the disk queue is long and the database's pages may have left the
    page cache, and a read that goes to the disk from the event loop then stalls every request for
    up to a few hundred milliseconds. The memory is written through: each write re-reads its row in
    the writer's thread, so what readers see is what the table holds. A write and its re-read hold
    one lock (SQLite takes one writer at a time anyway): two writers racing on a row would otherwise
    let the older re-read land last, and a job read `verifying` forever while the table said
    `complete`."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = str(path)
        self._local = threading.local()
        self._all: weakref.WeakSet[_Conn] = weakref.WeakSet()  # a thread's connection dies with it
        self._all_lock = threading.Lock()
        self._closed = False
        self._rows: OrderedDict[str, sqlite3.Row] = OrderedDict()   # job_id -> row, newest use last
        self._newest: dict[tuple[str, str | None], tuple[int, str]] = {}   # (kind, model or None) -> (seq, job_id)
        self._mem_lock = threading.Lock()     # held only around dict operations: readers never wait on SQL
        self._write_lock = threading.Lock()   # a write, its re-read and its memory update, in order
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._tx() as db:
            cols = ", ".join(f"{k} {v}" for k, v in COLUMNS.items())
            db.execute(f"CREATE TABLE IF NOT EXISTS jobs ({cols})")
            have = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
            for k, v in COLUMNS.items():  # forward migration: new columns on an old file
                if k not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {k} {v.replace('PRIMARY KEY', '')}")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_seq ON jobs(seq)")
            # The scheduler, the queue limit and the disk check ask "which jobs of a kind are in these
            # states"; submit and the model list ask it per model. Both stay index lookups however
            # many finished jobs the table holds.
            db.execute("DROP INDEX IF EXISTS jobs_model")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_kind_status ON jobs(kind, status, seq)")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_model_status ON jobs(model_id, kind, status, seq)")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_completed ON jobs(completed_at)")

    @property
    def _db(self) -> sqlite3.Connection:
        holder = getattr(self._local, "conn", None)
        if holder is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the job store is closed")
            db = sqlite3.connect(self._path, isolation_level=None, timeout=30, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            holder = self._local.conn = _Conn(db)
            with self._all_lock:
                self._all.add(holder)
        return holder.db

    @contextmanager
    def _tx(self):
        """A write transaction; BEGIN IMMEDIATE takes SQLite's write lock up front."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            for holder in list(self._all):
                holder.close()

    @staticmethod
    def _decode(row: sqlite3.Row | None) -> dict | None:
        if row is None:
            return None
        d = dict(row)
        for k in JSON_COLUMNS:
            d[k] = json.loads(d[k]) if d.get(k) else None
        return d

    @staticmethod
    def _encode(fields: dict) -> dict:
        return {k: (json.dumps(v) if k in JSON_COLUMNS and v is not None else v)
                for k, v in fields.items() if k in COLUMNS}

    def insert(self, job: dict) -> None:
        row = self._encode(job)
        with self._write_lock:
            with self._tx() as db:
                row["seq"] = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
                keys = ", ".join(row)
                db.execute(f"INSERT INTO jobs ({keys}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
            self._remember(row["job_id"])
        self._note_newest(row["kind"], row.get("model_id"), row["seq"], row["job_id"])

    def _note_newest(self, kind: str, model_id: str | None, seq: int, job_id: str) -> None:
        with self._mem_lock:
            for key in {(kind, None), (kind, model_id)}:
                if self._newest.get(key, (-1, ""))[0] < seq:   # concurrent inserts: the higher seq wins
                    self._newest[key] = (seq, job_id)

    def _remember(self, job_id: str) -> None:
        """Re-read a written row (in the writer's thread) into the read-side memory."""
        fresh = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        with self._mem_lock:
            if fresh is None:
                self._rows.pop(job_id, None)
                return
            self._rows[job_id] = fresh
            self._rows.move_to_end(job_id)
            while len(self._rows) > MEMORY_ROWS:
                self._rows.popitem(last=False)

    def update(self, job_id: str, *, reopen: bool = False, **fields) -> bool:
        """Write fields; False when nothing was written. A write that sets `status` never touches a
        job already in a final state (a late progress tick cannot flip `complete` back to
        `verifying`): the condition is in the UPDATE itself, so no timing can get past it. Only
        `reopen=True` (resume of a failed or cancelled job) moves a final job back."""
        row = self._encode(fields)
        if not row:
            return False
        sets = ", ".join(f"{k} = ?" for k in row)
        sql, args = f"UPDATE jobs SET {sets} WHERE job_id = ?", [*row.values(), job_id]
        if "status" in row and not reopen:
            sql += f" AND status NOT IN ({', '.join('?' * len(FINAL))})"
            args.extend(FINAL)
        with self._write_lock:
            written = self._db.execute(sql, args).rowcount > 0
            if written:
                self._remember(job_id)
        return written

    def get(self, job_id: str) -> dict | None:
        with self._mem_lock:
            row = self._rows.get(job_id)
        if row is None:
            # Not under the write lock (a reader never waits on a writer): setdefault keeps a row a
            # writer put there meanwhile, which is at least as new as this read.
            row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is not None:
                with self._mem_lock:
                    self._rows.setdefault(job_id, row)
        return self._decode(row)   # decoded per read: callers get objects of their own

    def newest(self, kind: str, model_id: str | None = None) -> dict | None:
        """The most recently created job of a kind (for one model), as `query(kind=, model_id=,
        limit=1)` would answer, from memory after the first time."""
        with self._mem_lock:
            known = self._newest.get((kind, model_id))
        if known is not None:
            rec = self.get(known[1])
            if rec is not None:
                return rec
        rows = self.query(kind=kind, model_id=model_id, limit=1)
        if not rows:
            return None
        with self._mem_lock:
            key = (kind, model_id)
            if self._newest.get(key, (-1, ""))[0] < rows[0]["seq"]:
                self._newest[key] = (rows[0]["seq"], rows[0]["job_id"])
        return rows[0]

    def query(self, *, status: str | None = None, kind: str | None = None, model_id: str | None = None,
              revision: str | None = None, statuses: tuple[str, ...] | None = None,
              limit: int = 50, offset: int = 0, oldest_first: bool = False) -> list[dict]:
        where, args = [], []
        for col, val in (("status", status), ("kind", kind), ("model_id", model_id), ("revision", revision)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY seq {'ASC' if oldest_first else 'DESC'} LIMIT ? OFFSET ?"
        return [self._decode(r) for r in self._db.execute(sql, [*args, limit, offset])]

    def count(self, statuses: tuple[str, ...], kind: str | None = None) -> int:
        sql = f"SELECT COUNT(*) FROM jobs WHERE status IN ({', '.join('?' * len(statuses))})"
        args = list(statuses)
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        return self._db.execute(sql, args).fetchone()[0]

    def prune(self, before_iso: str) -> int:
        """Delete finished jobs completed before the given time. Returns how many."""
        where = f"completed_at < ? AND status IN ({', '.join('?' * len(FINAL))})"
        args = [before_iso, *FINAL]
        with self._write_lock:
            with self._tx() as db:
                gone = {r[0] for r in db.execute(f"SELECT job_id FROM jobs WHERE {where}", args)}
                db.execute(f"DELETE FROM jobs WHERE {where}", args)
            # Only the pruned rows leave memory: emptying it all would let a read that went to the
            # file before a write put its older row back (get's setdefault finds nothing to keep).
            with self._mem_lock:
                for job_id in gone:
                    self._rows.pop(job_id, None)
                self._newest = {k: v for k, v in self._newest.items() if v[1] not in gone}
        return len(gone)

    def counts_by_status(self) -> dict[tuple[str, str], int]:
        return {(r[0], r[1]): r[2] for r in
                self._db.execute("SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status")}
