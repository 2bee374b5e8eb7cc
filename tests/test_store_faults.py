"""Store faults on real files, real processes and a real (tiny) file system: each gives a clear
error naming the database, and nothing partial is written."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tenax.core.errors import ConfigError
from tenax.store import StoreBusy, StoreError, open_store
from tenax.store.base import CHECKPOINT_EVERY, TRUNCATE_WAL_ABOVE


def _goal_and_session(st) -> tuple[str, str]:
    gid = st.create_goal(objective="o", model="m", workspace="/w")
    return gid, st.create_session(gid, model="m", system="s")


@pytest.mark.parametrize("damage", ["garbage", "truncated_header"])
def test_a_corrupted_database_file_is_a_config_error_naming_it(tmp_path: Path, damage: str):
    db = tmp_path / "tenax.db"
    if damage == "garbage":
        db.write_bytes(os.urandom(64 * 1024))
    else:
        open_store(str(db)).close()
        data = bytearray(db.read_bytes())
        data[:100] = b"\x00" * 100  # the SQLite header is gone
        db.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as ei:
        open_store(str(db))
    msg = str(ei.value)
    assert str(db) in msg and ("not an SQLite database" in msg or "corrupted" in msg), msg


_LOCKER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_a_write_lock_held_beyond_the_busy_timeout_is_store_busy(tmp_path: Path):
    db = tmp_path / "tenax.db"
    st = open_store(str(db))
    try:
        gid, sid = _goal_and_session(st)
        st.append_step(sid, "user", {"text": "hi"})
        p = subprocess.Popen([sys.executable, "-c", _LOCKER, str(db)], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None and p.stdout.readline().strip() == "locked"
            with pytest.raises(StoreBusy) as ei:
                st.append_step(sid, "assistant", {"text": "never"})
            assert str(db) in str(ei.value) and "locked" in str(ei.value)
            assert st.get_goal(gid).status == "pending"  # reads still work while a writer holds the lock
        finally:
            p.kill()
            p.wait(10)
        assert [s.seq for s in st.steps(sid)] == [1]
        assert st.append_step(sid, "assistant", {"text": "now"}) == 2
    finally:
        st.close()


@pytest.fixture
def tiny_fs(tmp_path: Path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_a_clear_error_and_nothing_partial_is_written(tiny_fs: Path):
    db = tiny_fs / "tenax.db"
    st = open_store(str(db))
    try:
        gid, sid = _goal_and_session(st)
        acked = 0
        with pytest.raises(StoreError) as ei:
            for i in range(10_000):
                st.append_step(sid, "tool_result", {"i": i, "blob": os.urandom(8 * 1024).hex()})
                acked += 1
        assert "full" in str(ei.value) and str(db) in str(ei.value)
        assert acked > 5
    finally:
        st.close()
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = raw.execute("SELECT seq, payload FROM steps ORDER BY seq").fetchall()
    finally:
        raw.close()
    assert [r[0] for r in rows] == list(range(1, acked + 1))  # every acknowledged step, and no other
    assert all(len(r[1]) > 16 * 1024 for r in rows)


_LONG_READER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM steps").fetchone()  # holds a snapshot: no checkpoint can pass it
    print("reading", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    """
)


def test_the_wal_shrinks_back_after_a_long_reader(tmp_path: Path):
    """A reader that holds a snapshot lets the WAL grow (unavoidably); once it is gone the WAL must
    come back down instead of keeping its peak size for ever."""
    db, wal = tmp_path / "tenax.db", Path(f"{tmp_path / 'tenax.db'}-wal")
    st = open_store(str(db))
    try:
        _, sid = _goal_and_session(st)
        st.append_step(sid, "event", {})
        reader = subprocess.Popen([sys.executable, "-c", _LONG_READER, str(db)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().strip() == "reading"
        for i in range(1000):
            st.append_step(sid, "tool_result", {"i": i, "blob": "x" * 8000})
        assert wal.stat().st_size > 7_000_000  # the reader pinned it
        reader.communicate("done\n", timeout=30)
        sizes = []
        for i in range(CHECKPOINT_EVERY * 2):
            st.append_step(sid, "tool_result", {"i": i, "blob": "x" * 8000})
            sizes.append(wal.stat().st_size)
        assert min(sizes) < 256 * 1024 and sizes[-1] < 4_000_000, (min(sizes), sizes[-1])
    finally:
        st.close()


def test_the_wal_stays_small_under_a_steady_stream_of_appends(tmp_path: Path):
    """No reader pins it: the periodic checkpoints keep the WAL far below the size that gets it
    truncated, reusing its file instead of growing it."""
    db, wal = tmp_path / "tenax.db", Path(f"{tmp_path / 'tenax.db'}-wal")
    st = open_store(str(db))
    try:
        _, sid = _goal_and_session(st)
        sizes = []
        for i in range(CHECKPOINT_EVERY * 10):
            st.append_step(sid, "tool_result", {"i": i, "blob": "x" * 600})
            sizes.append(wal.stat().st_size)
        assert max(sizes) < TRUNCATE_WAL_ABOVE / 2, max(sizes)
        assert min(sizes) > 0  # reused in place, never truncated
    finally:
        st.close()


def test_durability_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for value, expected in (("full", 2), ("", 1), ("NORMAL", 1)):
        monkeypatch.setenv("TENAX_DURABILITY", value)
        st = open_store(str(tmp_path / "d.db"))
        try:
            with st.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
        finally:
            st.close()
    monkeypatch.setenv("TENAX_DURABILITY", "paranoid")
    with pytest.raises(ConfigError, match="TENAX_DURABILITY='paranoid'"):
        open_store(str(tmp_path / "d.db"))
