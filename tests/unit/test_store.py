"""The desired-state store: every behaviour, against both backends.

The ``store`` and ``make_store`` fixtures run each test on SQLite (a file in
tmp_path) and on the in-memory fake, so the fake stays faithful. Tests that
only make sense for a file (reopening, several processes) use ``db_path``.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import podnet.store
from podnet.errors import InvalidInput, StoreConflict
from podnet.store import (
    Delete,
    Entry,
    Event,
    MemoryStore,
    Put,
    SqliteStore,
    Store,
    StoreUnavailable,
    open_store,
)

MakeStore = Callable[..., Store]
JOIN_TIMEOUT = 60.0  # seconds: bounds every thread and process a test starts
WATCH_TIMEOUT = 30.0  # seconds: a watch that should wake long before this


@pytest.fixture(params=["sqlite", "memory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    opened: list[Store] = []

    def make(**options: Any) -> Store:
        store: Store
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / "state" / "state.db", **options)
        else:
            store = MemoryStore(**options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


def keys(entries: list[Entry]) -> list[str]:
    return [e.key for e in entries]


def summary(events: list[Event]) -> list[tuple[str, str, int]]:
    return [(e.kind, e.key, e.revision) for e in events]


# --- the public surface ---------------------------------------------------


def test_exported_names() -> None:
    assert set(podnet.store.__all__) == {
        "DEFAULT_HISTORY",
        "JSON",
        "Delete",
        "Entry",
        "Event",
        "MemoryStore",
        "Put",
        "SqliteStore",
        "Store",
        "StoreUnavailable",
        "open_store",
    }
    for name in podnet.store.__all__:
        assert hasattr(podnet.store, name)


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    with open_store("memory:") as memory:
        assert isinstance(memory, MemoryStore)
    with open_store(f"sqlite://{tmp_path}/a/state.db") as by_url:
        assert isinstance(by_url, SqliteStore)
        assert by_url.path == tmp_path / "a" / "state.db"
    with open_store(str(tmp_path / "b.db")) as by_path:
        assert isinstance(by_path, SqliteStore)
        assert by_path.path == tmp_path / "b.db"


@pytest.mark.parametrize("url", ["etcd://10.0.0.1:2379", "redis://x", "sqlite://", ""])
def test_open_store_refuses_what_it_cannot_open(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        open_store(url)
    assert caught.value.hint


def test_open_store_says_etcd_is_not_available_yet() -> None:
    with pytest.raises(InvalidInput, match="etcd backend not available yet"):
        open_store("etcd://127.0.0.1:2379")


# --- reads and writes -----------------------------------------------------


def test_empty_store(store: Store) -> None:
    assert store.revision() == 0
    assert store.get("/pods/a") is None
    assert store.list("") == []
    assert store.snapshot("/") == (0, [])


def test_put_then_get(store: Store) -> None:
    revision = store.put("/pods/a", {"ip": "10.0.0.2"})
    assert revision == 1
    assert store.get("/pods/a") == Entry("/pods/a", {"ip": "10.0.0.2"}, 1)
    assert store.revision() == 1


def test_json_values_round_trip(store: Store) -> None:
    value = {
        "text": 'héllo ✓ \U0001f600 "quoted" \\ \n\t',
        "int": 2**70,
        "float": 1.5,
        "bool": True,
        "none": None,
        "list": [1, [2, {"x": []}], "three"],
        "nested": {"deep": {"deeper": {}}},
        "": "empty key",
    }
    store.put("/v", value)
    entry = store.get("/v")
    assert entry is not None and entry.value == value
    assert store.list("/v")[0].value == value


def test_values_are_copies(store: Store) -> None:
    value: dict[str, Any] = {"labels": {"app": "web"}, "ports": [80]}
    store.put("/pods/a", value)
    value["labels"]["app"] = "changed after put"
    read = store.get("/pods/a")
    assert read is not None
    read.value["ports"].append(443)
    assert store.get("/pods/a") == Entry("/pods/a", {"labels": {"app": "web"}, "ports": [80]}, 1)


def test_tuples_come_back_as_lists(store: Store) -> None:
    store.put("/t", {"pair": (1, 2)})
    entry = store.get("/t")
    assert entry is not None and entry.value == {"pair": [1, 2]}


@pytest.mark.parametrize(
    "key",
    ["", "a\x00b", "lone \ud800 surrogate", None, 7],
)
def test_invalid_keys_are_refused(store: Store, key: Any) -> None:
    with pytest.raises(InvalidInput):
        store.put(key, {})
    with pytest.raises(InvalidInput):
        store.commit([Put(key, {})])
    assert store.revision() == 0


@pytest.mark.parametrize(
    "value",
    [
        [1, 2],
        "text",
        None,
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": object()},
        {"x": "lone \ud800 surrogate"},
        {("tuple", "key"): 1},
    ],
)
def test_invalid_values_are_refused(store: Store, value: Any) -> None:
    with pytest.raises(InvalidInput, match="/pods/a"):
        store.put("/pods/a", value)
    with pytest.raises(InvalidInput):
        store.commit([Put("/pods/b", {}), Put("/pods/a", value)])
    assert store.revision() == 0
    assert store.list("") == []


@pytest.mark.parametrize("expect", [-1, 1.0, "1", True])
def test_invalid_expectations_are_refused(store: Store, expect: Any) -> None:
    with pytest.raises(InvalidInput):
        store.put("/k", {}, expect=expect)
    with pytest.raises(InvalidInput):
        store.delete("/k", expect=expect)
    with pytest.raises(InvalidInput):
        store.commit([Put("/k", {})], expect={"/k": expect})
    assert store.revision() == 0


# --- compare-and-swap -----------------------------------------------------


def test_expect_zero_creates_only_when_missing(store: Store) -> None:
    assert store.put("/pods/a", {"n": 1}, expect=0) == 1
    with pytest.raises(StoreConflict) as caught:
        store.put("/pods/a", {"n": 2}, expect=0)
    message = str(caught.value)
    assert "/pods/a" in message and "revision 0" in message and "revision 1" in message
    assert store.get("/pods/a") == Entry("/pods/a", {"n": 1}, 1)
    assert store.revision() == 1


def test_expect_revision_must_match(store: Store) -> None:
    first = store.put("/pods/a", {"n": 1})
    store.put("/pods/b", {"n": 1})  # moves the global revision, not a's
    second = store.put("/pods/a", {"n": 2}, expect=first)
    with pytest.raises(StoreConflict) as caught:
        store.put("/pods/a", {"n": 3}, expect=first)
    assert f"revision {first}" in str(caught.value)
    assert f"revision {second}" in str(caught.value)
    assert store.get("/pods/a") == Entry("/pods/a", {"n": 2}, second)
    assert store.revision() == second


def test_expect_on_a_missing_key_fails(store: Store) -> None:
    with pytest.raises(StoreConflict, match="/pods/a"):
        store.put("/pods/a", {}, expect=5)
    assert store.get("/pods/a") is None
    assert store.revision() == 0


def test_conflict_has_a_hint_and_kind(store: Store) -> None:
    store.put("/k", {})
    with pytest.raises(StoreConflict) as caught:
        store.put("/k", {}, expect=0)
    assert caught.value.hint
    assert caught.value.to_dict()["kind"] == "store-conflict"


# --- delete ---------------------------------------------------------------


def test_delete_is_idempotent(store: Store) -> None:
    store.put("/pods/a", {})
    assert store.delete("/pods/a") is True
    assert store.revision() == 2
    assert store.delete("/pods/a") is False
    assert store.delete("/never") is False
    assert store.revision() == 2
    assert store.get("/pods/a") is None


def test_delete_with_expect(store: Store) -> None:
    revision = store.put("/pods/a", {})
    with pytest.raises(StoreConflict, match="/pods/a"):
        store.delete("/pods/a", expect=revision + 1)
    with pytest.raises(StoreConflict):
        store.delete("/pods/a", expect=0)
    assert store.get("/pods/a") is not None
    assert store.delete("/pods/a", expect=revision) is True
    assert store.delete("/pods/a", expect=0) is False
    with pytest.raises(StoreConflict):
        store.delete("/pods/a", expect=revision)


# --- list -----------------------------------------------------------------

TRICKY_KEYS = [
    "/pod",
    "/pods",
    "/pods/",
    "/pods/a",
    "/pods/ab",
    "/pods/b",
    "/pods0",
    "/podsx",
    "/pods/é",
    "/pods/\U0010ffff",
    "/pods/\U0010ffffz",
    "/p\ud7ff",
    "/p\ud7ffa",
    "/p\ue000",
    "/q",
    "a",
    "\U0010ffff",
    "\U0010ffff\U0010ffff",
]
PREFIXES = [
    "",
    "/",
    "/pod",
    "/pods",
    "/pods/",
    "/pods/a",
    "/pods/\U0010ffff",
    "/p\ud7ff",
    "\U0010ffff",
    "/none",
]


def test_list_by_prefix(store: Store) -> None:
    for key in ["/services/a", "/pods/b", "/pods/ab", "/pods/a", "/pod", "/podsx"]:
        store.put(key, {"key": key})
    assert keys(store.list("/pods/")) == ["/pods/a", "/pods/ab", "/pods/b"]
    assert keys(store.list("/pods/a")) == ["/pods/a", "/pods/ab"]
    assert keys(store.list("/pod")) == ["/pod", "/pods/a", "/pods/ab", "/pods/b", "/podsx"]
    assert keys(store.list("/pods/a/")) == []
    assert [e.value["key"] for e in store.list("")] == sorted(
        ["/services/a", "/pods/b", "/pods/ab", "/pods/a", "/pod", "/podsx"]
    )


@pytest.mark.parametrize("prefix", PREFIXES)
def test_list_is_a_plain_string_prefix_in_code_point_order(store: Store, prefix: str) -> None:
    store.commit([Put(key, {}) for key in TRICKY_KEYS])
    assert keys(store.list(prefix)) == sorted(k for k in TRICKY_KEYS if k.startswith(prefix))


def test_list_entries_carry_their_own_revision(store: Store) -> None:
    a = store.put("/pods/a", {})
    b = store.put("/pods/b", {})
    store.put("/other", {})
    assert [(e.key, e.revision) for e in store.list("/pods/")] == [("/pods/a", a), ("/pods/b", b)]


def test_snapshot_pairs_revision_and_list(store: Store) -> None:
    store.put("/pods/a", {})
    revision = store.put("/other", {})
    assert store.snapshot("/pods/") == (revision, store.list("/pods/"))


# --- commit ---------------------------------------------------------------


def test_commit_applies_everything_under_one_revision(store: Store) -> None:
    store.put("/pods/old", {})
    revision = store.commit(
        [Put("/pods/a", {"n": 1}), Put("/pods/b", {"n": 2}), Delete("/pods/old")]
    )
    assert revision == 2 == store.revision()
    assert store.list("/pods/") == [
        Entry("/pods/a", {"n": 1}, 2),
        Entry("/pods/b", {"n": 2}, 2),
    ]
    assert summary(store.watch("/", 1, timeout=0)) == [
        ("put", "/pods/a", 2),
        ("put", "/pods/b", 2),
        ("delete", "/pods/old", 2),
    ]


def test_failed_commit_applies_nothing(store: Store) -> None:
    a = store.put("/pods/a", {"n": 1})
    with pytest.raises(StoreConflict, match="/pods/b"):
        store.commit(
            [Put("/pods/a", {"n": 2}), Put("/pods/c", {})],
            expect={"/pods/a": a, "/pods/b": 3},  # the first holds, the second fails
        )
    assert store.revision() == a
    assert store.list("/pods/") == [Entry("/pods/a", {"n": 1}, a)]
    assert store.watch("/", a, timeout=0) == []


def test_commit_expectations_guard_other_keys(store: Store) -> None:
    network = store.put("/networks/n1", {"subnet": "10.1.0.0/24"})
    store.commit([Put("/pods/a", {"network": "n1"})], expect={"/networks/n1": network})
    store.put("/networks/n1", {"subnet": "10.2.0.0/24"})
    with pytest.raises(StoreConflict, match="/networks/n1"):
        store.commit([Put("/pods/b", {"network": "n1"})], expect={"/networks/n1": network})
    assert store.get("/pods/b") is None


def test_commit_expect_zero_and_missing_keys(store: Store) -> None:
    store.commit([Put("/a", {})], expect={"/a": 0, "/b": 0})
    with pytest.raises(StoreConflict):
        store.commit([Put("/b", {})], expect={"/a": 0})
    assert store.get("/b") is None


def test_commit_refuses_a_key_twice(store: Store) -> None:
    with pytest.raises(InvalidInput, match="/pods/a"):
        store.commit([Put("/pods/a", {}), Delete("/pods/a")])
    assert store.revision() == 0


def test_commit_refuses_other_ops(store: Store) -> None:
    with pytest.raises(InvalidInput):
        store.commit([Put("/a", {}), ("put", "/b")])  # type: ignore[list-item]
    assert store.revision() == 0


def test_commit_that_changes_nothing_keeps_the_revision(store: Store) -> None:
    revision = store.put("/a", {})
    assert store.commit([]) == revision
    assert store.commit([Delete("/missing")], expect={"/a": revision}) == revision
    assert store.revision() == revision
    assert store.watch("/", revision, timeout=0) == []


def test_big_commit(store: Store) -> None:
    before = store.revision()
    revision = store.commit([Put(f"/pods/{i:05}", {"i": i}) for i in range(10_000)])
    assert revision == before + 1
    entries = store.list("/pods/")
    assert len(entries) == 10_000
    assert {e.revision for e in entries} == {revision}
    assert entries[1234] == Entry("/pods/01234", {"i": 1234}, revision)
    assert len(store.watch("/pods/", before, timeout=0)) == 10_000


# --- revisions ------------------------------------------------------------


def test_revisions_only_grow(store: Store) -> None:
    seen = [
        store.put("/a", {}),
        store.put("/b", {}),
        store.put("/a", {"again": True}),
        store.commit([Put("/c", {}), Delete("/b")]),
    ]
    store.delete("/a")
    seen.append(store.revision())
    seen.append(store.put("/a", {}))  # re-created: a new revision, never an old one
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert store.revision() == seen[-1]
    entry = store.get("/a")
    assert entry is not None and entry.revision == seen[-1]


def test_failed_writes_do_not_move_the_revision(store: Store) -> None:
    store.put("/a", {})
    with pytest.raises(StoreConflict):
        store.put("/a", {}, expect=0)
    with pytest.raises(StoreConflict):
        store.delete("/a", expect=9)
    assert store.revision() == 1
    assert store.put("/b", {}) == 2


def test_concurrent_threads_never_lose_an_update(store: Store) -> None:
    store.put("/counter", {"n": 0})
    threads = [threading.Thread(target=increment, args=(store, 25)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive()
    entry = store.get("/counter")
    assert entry is not None and entry.value == {"n": 100}


def increment(store: Store, times: int) -> int:
    """Add 1 to /counter ``times`` times with compare-and-swap; return the conflicts."""
    conflicts = 0
    for _ in range(times):
        while True:
            entry = store.get("/counter")
            assert entry is not None
            try:
                store.put("/counter", {"n": entry.value["n"] + 1}, expect=entry.revision)
                break
            except StoreConflict:
                conflicts += 1
    return conflicts


# --- watch ----------------------------------------------------------------


def test_watch_returns_events_after_a_revision(store: Store) -> None:
    a = store.put("/pods/a", {"n": 1})
    store.put("/services/s", {})
    b = store.put("/pods/b", {"n": 2})
    store.delete("/pods/a")
    events = store.watch("/pods/", a, timeout=0)
    assert events == [
        Event("put", "/pods/b", {"n": 2}, b),
        Event("delete", "/pods/a", None, b + 1),
    ]
    assert summary(store.watch("/pods/", 0, timeout=0))[0] == ("put", "/pods/a", a)
    assert store.watch("/pods/", store.revision(), timeout=0) == []


def test_watch_prefix_is_a_plain_string_prefix(store: Store) -> None:
    store.put("/pods/ab", {})
    store.put("/pod", {})
    store.put("/podsx", {})
    assert summary(store.watch("/pods/a", 0, timeout=0)) == [("put", "/pods/ab", 1)]
    assert [e.key for e in store.watch("/pod", 0, timeout=0)] == ["/pods/ab", "/pod", "/podsx"]


def test_watch_times_out_empty(store: Store) -> None:
    store.put("/services/s", {})
    assert store.watch("/pods/", 0, timeout=0.05) == []
    assert store.watch("/pods/", 0, timeout=0) == []


def test_watch_from_a_future_revision_waits(store: Store) -> None:
    store.put("/pods/a", {})
    assert store.watch("/pods/", 5, timeout=0.01) == []


def test_watch_wakes_on_a_write_from_another_thread(store: Store) -> None:
    start = store.revision()
    results: list[list[Event]] = []
    watcher = threading.Thread(
        target=lambda: results.append(store.watch("/pods/", start, timeout=WATCH_TIMEOUT))
    )
    watcher.start()
    store.put("/services/s", {})  # not under the prefix: the watch keeps waiting
    revision = store.put("/pods/a", {"n": 1})
    watcher.join(JOIN_TIMEOUT)
    assert not watcher.is_alive()
    assert results == [[Event("put", "/pods/a", {"n": 1}, revision)]]


def test_close_ends_a_waiting_watch(store: Store) -> None:
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            store.watch("/pods/", 0, timeout=WATCH_TIMEOUT)
        except StoreUnavailable as err:
            errors.append(err)

    watcher = threading.Thread(target=watch)
    watcher.start()
    store.close()
    watcher.join(JOIN_TIMEOUT)
    assert not watcher.is_alive()
    assert len(errors) == 1  # whether the close came before or during the wait


@pytest.mark.parametrize(("after", "timeout"), [(-1, 0.0), (0, -1.0), (0, float("nan"))])
def test_watch_refuses_bad_arguments(store: Store, after: int, timeout: float) -> None:
    with pytest.raises(InvalidInput):
        store.watch("/", after, timeout=timeout)


def test_watch_from_compacted_history_raises(make_store: MakeStore) -> None:
    store = make_store(history=3)
    for key in ["/a", "/b", "/c"]:
        store.put(key, {})
    assert len(store.watch("/", 0, timeout=0)) == 3  # exactly `history` events: all kept
    store.put("/d", {})  # revision 4: revision 1 drops out
    with pytest.raises(StoreConflict, match="compacted") as caught:
        store.watch("/", 0, timeout=0)
    assert caught.value.hint and "list" in caught.value.hint
    assert summary(store.watch("/", 1, timeout=0)) == [
        ("put", "/b", 2),
        ("put", "/c", 3),
        ("put", "/d", 4),
    ]


def test_compaction_keeps_whole_commits(make_store: MakeStore) -> None:
    store = make_store(history=3)
    store.put("/a", {})
    store.put("/b", {})
    revision = store.commit([Put(f"/big/{i}", {}) for i in range(5)])
    with pytest.raises(StoreConflict):
        store.watch("/", revision - 2, timeout=0)
    events = store.watch("/", revision - 1, timeout=0)
    assert len(events) == 5 and {e.revision for e in events} == {revision}
    store.put("/c", {})
    store.put("/d", {})  # the last 3 events are /big/4, /c, /d: the big commit stays whole
    assert len(store.watch("/", revision - 1, timeout=0)) == 7
    store.put("/e", {})
    with pytest.raises(StoreConflict):
        store.watch("/", revision - 1, timeout=0)


def test_watch_compaction_is_checked_for_any_prefix(make_store: MakeStore) -> None:
    store = make_store(history=1)
    store.put("/a", {})
    store.put("/b", {})
    with pytest.raises(StoreConflict):
        store.watch("/nothing-here/", 0, timeout=0)


def test_list_then_watch_misses_nothing(store: Store) -> None:
    store.put("/pods/a", {"n": 1})
    store.put("/pods/gone", {})
    revision, entries = store.snapshot("/pods/")
    store.put("/pods/a", {"n": 2})
    store.put("/pods/b", {"n": 1})
    store.delete("/pods/gone")
    state = {e.key: e.value for e in entries}
    for event in store.watch("/pods/", revision, timeout=0):
        if event.value is None:
            del state[event.key]
        else:
            state[event.key] = event.value
    assert state == {e.key: e.value for e in store.list("/pods/")}


# --- closing --------------------------------------------------------------


def test_closed_store_refuses_calls(store: Store) -> None:
    store.put("/a", {})
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get("/a")
    with pytest.raises(StoreUnavailable):
        store.put("/a", {})


# --- SQLite only: the file ------------------------------------------------


def test_sqlite_creates_a_private_state_directory(db_path: Path) -> None:
    with SqliteStore(db_path):
        pass
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_sqlite_uses_wal(db_path: Path) -> None:
    SqliteStore(db_path).close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_state_survives_reopening(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        store.put("/pods/a", {"ip": "10.0.0.2"})
        store.commit([Put("/pods/b", {}), Put("/services/s", {"vip": "10.96.0.1"})])
        store.delete("/pods/b")
        events = store.watch("/", 0, timeout=0)
    with SqliteStore(db_path) as store:
        assert store.revision() == 3
        assert store.list("") == [
            Entry("/pods/a", {"ip": "10.0.0.2"}, 1),
            Entry("/services/s", {"vip": "10.96.0.1"}, 2),
        ]
        assert store.watch("/", 0, timeout=0) == events
        assert store.put("/pods/c", {}) == 4


def test_sqlite_refuses_a_newer_schema(db_path: Path) -> None:
    SqliteStore(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreUnavailable, match="newer"):
        SqliteStore(db_path)


def test_sqlite_reports_a_locked_file(db_path: Path) -> None:
    SqliteStore(db_path).close()
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        with SqliteStore(db_path, busy_timeout=0.05) as store:
            with pytest.raises(StoreUnavailable, match="locked"):
                store.put("/a", {})
            assert store.get("/a") is None  # readers are not blocked by the writer
    finally:
        raw.close()


def test_sqlite_reports_an_unusable_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreUnavailable, match="cannot create"):
        SqliteStore(tmp_path / "file" / "state.db")


def test_sqlite_stores_on_one_file_share_state_and_wake_each_other(db_path: Path) -> None:
    with SqliteStore(db_path) as watcher_store, SqliteStore(db_path) as writer:
        results: list[list[Event]] = []
        watcher = threading.Thread(
            target=lambda: results.append(watcher_store.watch("/pods/", 0, timeout=WATCH_TIMEOUT))
        )
        watcher.start()
        writer.put("/pods/a", {})
        watcher.join(JOIN_TIMEOUT)
        assert not watcher.is_alive()
        assert summary(results[0]) == [("put", "/pods/a", 1)]
        assert watcher_store.get("/pods/a") == Entry("/pods/a", {}, 1)


# --- SQLite only: several processes ---------------------------------------


def run_processes(target: Callable[..., None], count: int, *args: Any) -> list[Any]:
    """Run ``target(queue, barrier, *args)`` in ``count`` fresh processes; collect results."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    barrier = context.Barrier(count)
    processes = [context.Process(target=target, args=(queue, barrier, *args)) for _ in range(count)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=JOIN_TIMEOUT) for _ in processes]
    for process in processes:
        process.join(JOIN_TIMEOUT)
        assert process.exitcode == 0
    return results


def create_once(queue: Any, barrier: Any, path: str) -> None:
    with SqliteStore(path) as store:
        barrier.wait(JOIN_TIMEOUT)
        try:
            store.put("/lock", {"owner": os.getpid()}, expect=0)
            queue.put(os.getpid())
        except StoreConflict:
            queue.put(None)


def increment_in_process(queue: Any, barrier: Any, path: str, times: int) -> None:
    with SqliteStore(path) as store:
        barrier.wait(JOIN_TIMEOUT)
        queue.put(increment(store, times))


def write_one(queue: Any, barrier: Any, path: str) -> None:
    with SqliteStore(path) as store:
        barrier.wait(JOIN_TIMEOUT)
        queue.put(store.put("/pods/from-another-process", {"pid": os.getpid()}))


def test_two_processes_never_both_create(db_path: Path) -> None:
    SqliteStore(db_path).close()
    winners = [pid for pid in run_processes(create_once, 4, str(db_path)) if pid]
    assert len(winners) == 1
    with SqliteStore(db_path) as store:
        assert store.get("/lock") == Entry("/lock", {"owner": winners[0]}, 1)
        assert store.revision() == 1


def test_processes_never_lose_an_update(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        store.put("/counter", {"n": 0})
    run_processes(increment_in_process, 3, str(db_path), 30)
    with SqliteStore(db_path) as store:
        entry = store.get("/counter")
        assert entry is not None and entry.value == {"n": 90}
        assert store.revision() == 91


def test_processes_can_open_a_new_file_together(db_path: Path) -> None:
    revisions = run_processes(write_one, 3, str(db_path))
    assert sorted(revisions) == [1, 2, 3]


def test_watch_sees_a_write_from_another_process(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        context = multiprocessing.get_context("spawn")
        queue, barrier = context.Queue(), context.Barrier(1)
        writer = context.Process(target=write_one, args=(queue, barrier, str(db_path)))
        writer.start()
        try:
            events = store.watch("/pods/", 0, timeout=WATCH_TIMEOUT)
        finally:
            writer.join(JOIN_TIMEOUT)
        assert writer.exitcode == 0
        assert summary(events) == [("put", "/pods/from-another-process", 1)]


def test_a_forked_child_gets_its_own_connection(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        store.put("/before-fork", {})
        context = multiprocessing.get_context("fork")
        child = context.Process(target=store.put, args=("/from-child", {}))
        child.start()
        child.join(JOIN_TIMEOUT)
        assert child.exitcode == 0
        assert keys(store.list("/")) == ["/before-fork", "/from-child"]
        assert store.put("/after-fork", {}) == 3
