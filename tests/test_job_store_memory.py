"""JobStore answers reads by id and "newest of a kind" from memory, written through: what it
answers must always equal what the table holds (a real SQLite file, written from several threads,
and by a second JobStore on the same file, as after a restart)."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from api.jobs.store import JobStore, now_iso


def _job(kind: str = "download", model: str | None = "org/a", status: str = "queued") -> dict:
    return {"job_id": uuid.uuid4().hex[:16], "kind": kind, "model_id": model, "revision": "main",
            "status": status, "created_at": now_iso(), "attempts": 0, "params": {"n": 1}}


def _sql_newest(store: JobStore, kind: str, model: str | None):
    rows = store.query(kind=kind, model_id=model, limit=1)
    return rows[0]["job_id"] if rows else None


def test_memory_reads_equal_the_table_through_writes_conditions_and_prune(tmp_path):
    store = JobStore(tmp_path / "state.db")
    assert store.newest("download") is None
    a, b = _job(model="org/a"), _job(model="org/b")
    store.insert(a)
    store.insert(b)
    assert store.newest("download")["job_id"] == b["job_id"] == _sql_newest(store, "download", None)
    assert store.newest("download", "org/a")["job_id"] == a["job_id"]
    assert store.newest("verify") is None

    assert store.update(a["job_id"], status="complete", result={"x": 1}, completed_at="2000-01-01T00:00:00Z")
    assert store.get(a["job_id"])["status"] == "complete" and store.get(a["job_id"])["result"] == {"x": 1}
    # A final status is kept by the table's condition, and so by what memory answers.
    assert not store.update(a["job_id"], status="downloading")
    assert store.get(a["job_id"])["status"] == "complete"
    # Readers get objects of their own.
    store.get(a["job_id"])["result"]["x"] = 99
    assert store.get(a["job_id"])["result"] == {"x": 1}

    # Concurrent inserts from several threads: the newest is the one with the highest seq.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: store.insert(_job(model="org/c")), range(40)))
    assert store.newest("download")["job_id"] == _sql_newest(store, "download", None)
    assert store.newest("download", "org/c")["job_id"] == _sql_newest(store, "download", "org/c")

    # A second store on the same file (a restart) finds the same answers through SQL first.
    again = JobStore(tmp_path / "state.db")
    assert again.newest("download")["job_id"] == store.newest("download")["job_id"]

    assert store.prune("2001-01-01T00:00:00Z") == 1
    assert store.get(a["job_id"]) is None and store.newest("download", "org/a") is None
    # The rows a prune keeps are still what the table holds.
    assert store.get(b["job_id"]) == again.get(b["job_id"])
    assert store.newest("download", "org/b")["job_id"] == b["job_id"]
    assert store.newest("download")["job_id"] == _sql_newest(store, "download", None)


def test_memory_keeps_the_last_write_when_writers_race_on_one_row(tmp_path):
    """The ticker writes progress (status `verifying`) while the job's thread writes `complete`:
    each write re-reads its row, and a re-read that was overtaken must not land after the newer one
    (a job then read `verifying` forever while the table held `complete`)."""
    store = JobStore(tmp_path / "state.db")
    jobs = [_job(status="downloading") for _ in range(60)]
    for j in jobs:
        store.insert(j)

    def ticker(job_id: str) -> None:
        for n in range(40):
            store.update(job_id, status="verifying", bytes_downloaded=n)

    def finish(job_id: str) -> None:
        store.update(job_id, bytes_downloaded=1000)
        store.update(job_id, status="complete", completed_at=now_iso())

    with ThreadPoolExecutor(16) as pool:
        for f in [pool.submit(fn, j["job_id"]) for j in jobs for fn in (ticker, finish)]:
            f.result()
    fresh = JobStore(tmp_path / "state.db")   # no memory of its own: what the table holds
    wrong = [(j["job_id"], store.get(j["job_id"])["status"], fresh.get(j["job_id"])["status"]) for j in jobs
             if store.get(j["job_id"]) != fresh.get(j["job_id"])]
    assert not wrong, wrong
    assert all(fresh.get(j["job_id"])["status"] == "complete" for j in jobs)
