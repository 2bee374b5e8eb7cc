"""Schema revision 0004 on real SQLite files: the status guard in the database, usage.estimated,
and an upgrade of a database made by the last release (revision 0003_memory) with data in it."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine

from tenax.core.errors import ConfigError
from tenax.core.messages import Usage
from tenax.core.protocols import UsageEntry
from tenax.core.status import VALUES, IllegalTransition, allowed_pairs
from tenax.store import open_store
from tenax.store.migrate import MIGRATIONS_DIR, alembic_config, migration_lock, script_head

RELEASE_HEAD = "0003_memory"
T0 = "2024-05-01 10:00:00.000000+00:00"


def _migration(name: str):
    path = next((MIGRATIONS_DIR / "versions").glob(f"{name}*.py"))
    spec = importlib.util.spec_from_file_location(f"_mig_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_the_migration_freezes_the_state_machine_of_the_code():
    mig = _migration("0004")
    assert mig.PAIRS == allowed_pairs()
    assert mig.STATUSES == VALUES


# Digests of the schema each released migration creates (tables, columns with type, nullability,
# default and key, foreign keys, indexes; the FTS5 tables aside). The migrations build their
# tables from the shared, frozen helpers in tenax/store/migrations/_columns.py: a change there
# must not change what an old migration creates.
RELEASED_SCHEMAS = {"0001": "b195ecd831adf6d2", "0002_subagents": "8766f0f251b6c45d",
                    "0003_memory": "276a4700ad6a4b65"}


def _structure(conn) -> list:
    from sqlalchemy import text

    tables = conn.execute(text("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'memory_fts%'"
                               " ORDER BY name")).scalars().all()
    return [[name,
             [list(r) for r in conn.execute(text(f"PRAGMA table_xinfo('{name}')"))],
             [list(r) for r in conn.execute(text(f"PRAGMA foreign_key_list('{name}')"))],
             [[*ix, [list(c) for c in conn.execute(text(f"PRAGMA index_info('{ix[1]}')"))]]
              for ix in (list(r) for r in conn.execute(text(f"PRAGMA index_list('{name}')")))]]
            for name in tables]


def test_released_migrations_still_create_the_schema_they_always_did(tmp_path: Path):
    import hashlib

    eng = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    try:
        for rev, digest in RELEASED_SCHEMAS.items():
            with eng.begin() as conn:
                command.upgrade(alembic_config(conn), rev)
            with eng.connect() as conn:
                structure = _structure(conn)
            got = hashlib.sha256(json.dumps(structure).encode()).hexdigest()[:16]
            assert got == digest, f"migration {rev} now creates another schema: {json.dumps(structure)}"
    finally:
        eng.dispose()


def _raw(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def test_illegal_transition_is_refused_in_code_and_by_the_database(tmp_path: Path):
    db = tmp_path / "t.db"
    st = open_store(str(db))
    gid = st.create_goal(objective="o", model="m", workspace="/w")
    st.set_status(gid, "running")
    st.set_status(gid, "succeeded")
    with pytest.raises(IllegalTransition, match="succeeded"):
        st.set_status(gid, "running")
    other = st.create_goal(objective="o2", model="m", workspace="/w")
    st.close()

    raw = _raw(db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="illegal goal status transition"):
            raw.execute("UPDATE goals SET status='running' WHERE id=?", (gid,))
        with pytest.raises(sqlite3.IntegrityError, match="illegal goal status transition"):
            raw.execute("UPDATE goals SET status='succeeded' WHERE id=?", (other,))  # pending -> succeeded
        with pytest.raises(sqlite3.IntegrityError):  # the trigger, then the CHECK, refuse it
            raw.execute("UPDATE goals SET status='bogus' WHERE id=?", (other,))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            raw.execute("INSERT INTO goals (id, objective, model, workspace, status, strategy, network, budgets, config,"
                        " turns, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,"
                        " uncached_cost_usd, elapsed_s, created_at, updated_at) VALUES ('x', 'o', 'm', '/w', 'done',"
                        " 'c', 'none', '{}', '{}', 0, 0, 0, 0, 0, 0, 0, 0, ?, ?)", (T0, T0))
        # legal moves and updates that leave the status alone still work
        raw.execute("UPDATE goals SET status='running' WHERE id=?", (other,))
        raw.execute("UPDATE goals SET summary='done' WHERE id=?", (gid,))
        assert raw.execute("SELECT status, summary FROM goals WHERE id=?", (gid,)).fetchone() == ("succeeded", "done")
    finally:
        raw.close()


def test_usage_estimated_is_stored(tmp_path: Path):
    st = open_store(str(tmp_path / "t.db"))
    try:
        gid = st.create_goal(objective="o", model="m", workspace="/w")
        sid = st.create_session(gid, model="m", system="s")
        st.append_step(sid, "assistant", {"text": "a"},
                       usage=UsageEntry(provider="openai", model="m", usage=Usage(input_tokens=5), estimated=True))
        st.append_step(sid, "assistant", {"text": "b"},
                       usage=UsageEntry(provider="openai", model="m", usage=Usage(input_tokens=7)))
        assert [u.estimated for u in st.usage_for_goal(gid)] == [True, False]
        assert st.goal_usage_totals(gid)["estimated_calls"] == 1
    finally:
        st.close()


def _build_release_db(db: Path) -> None:
    """A database exactly as the last release (schema 0003_memory) left it, with data in it."""
    eng = create_engine(f"sqlite:///{db}")
    try:
        with eng.connect() as conn, conn.begin():
            command.upgrade(alembic_config(conn), RELEASE_HEAD)
    finally:
        eng.dispose()
    raw = _raw(db)
    try:
        raw.execute("BEGIN")
        for i, status in enumerate(("pending", "running", "succeeded", "failed", "budget_exhausted", "stopped")):
            raw.execute(
                "INSERT INTO goals VALUES (?, ?, 'pytest -q', 'claude-x', '/ws', ?, 'continuous', 'none', ?, '{}',"
                " ?, 100, 50, 10, 5, 0.25, 0.5, 12.5, 'sum', NULL, ?, ?, NULL)",
                (f"g{i}", f"objective {i}", status, json.dumps({"max_turns": 9}), i, T0, T0))
            raw.execute("INSERT INTO sessions VALUES (?, ?, NULL, 'main', 'claude-x', 'sys', '[]', 'active', ?)",
                        (f"s{i}", f"g{i}", T0))
            for seq in (1, 2, 3):
                raw.execute("INSERT INTO steps VALUES (?, ?, ?, 'user', ?, ?)",
                            (f"st{i}-{seq}", f"s{i}", seq, json.dumps({"text": f"step {seq}"}), T0))
            raw.execute("INSERT INTO usage VALUES (?, ?, ?, 2, 'anthropic', 'claude-x', 100, 50, 10, 5, 0.25, 0.5, 1,"
                        " '[]', 1.5, ?)", (f"u{i}", f"s{i}", f"g{i}", T0))
        raw.execute("INSERT INTO agents VALUES ('a1', 'g1', 's1', NULL, 'look', 'explore', 'claude-x', 'done', '{}',"
                    " 0.1, 1, 0, 'shared', '[]', NULL, 'call1', NULL, ?, ?, NULL)", (T0, T0))
        raw.execute("INSERT INTO plan_items (goal_id, position, text, status, updated_at)"
                    " VALUES ('g1', 0, 'fix it', 'in_progress', ?)", (T0,))
        raw.execute("INSERT INTO memory_notes (goal_id, kind, text, source, created_at)"
                    " VALUES ('g1', 'pitfall', 'the flaky test', 'model', ?)", (T0,))
        raw.execute("INSERT INTO steering (goal_id, text, created_at) VALUES ('g1', 'use the cache', ?)", (T0,))
        raw.execute("INSERT INTO memory_docs (goal_id, session_id, step_seq, kind, body)"
                    " VALUES ('g1', 's1', 2, 'user', 'the parser chokes on tabs')")
        raw.execute("INSERT INTO memory_fts(rowid, body) VALUES (last_insert_rowid(), 'the parser chokes on tabs')")
        raw.execute("COMMIT")
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == (RELEASE_HEAD,)
    finally:
        raw.close()


def test_a_release_database_is_upgraded_to_head_with_everything_intact(tmp_path: Path):
    db = tmp_path / "release.db"
    _build_release_db(db)
    st = open_store(str(db))
    try:
        goals = {g.id: g for g in st.list_goals()}
        assert sorted(goals) == [f"g{i}" for i in range(6)]
        g1 = goals["g1"]
        assert (g1.status, g1.objective, g1.turns, g1.cost_usd, g1.budgets) == ("running", "objective 1", 1, 0.25,
                                                                              {"max_turns": 9})
        assert g1.lease_token == 0 and g1.lease_host is None
        for i in range(6):
            assert [s.payload["text"] for s in st.steps(f"s{i}")] == ["step 1", "step 2", "step 3"]
            [u] = st.usage_for_goal(f"g{i}")
            assert (u.input_tokens, u.step_seq, u.estimated) == (100, 2, False)
        assert [a.task for a in st.agents_for_goal("g1")] == ["look"]
        assert [p.text for p in st.plan_items("g1")] == ["fix it"]
        assert [n.text for n in st.notes("g1")] == ["the flaky test"]
        assert [m.text for m in st.pending_steering("g1")] == ["use the cache"]
        assert [h.step_seq for h in st.recall("g1", "parser tabs")] == [2]
        # the new guard holds on the upgraded data
        with pytest.raises(IllegalTransition):
            st.set_status("g2", "running")  # succeeded is final
        st.set_status("g1", "succeeded")
        assert st.append_step("s1", "event", {"after": "upgrade"}) == 4
    finally:
        st.close()
    raw = _raw(db)
    try:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == (script_head(),)
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert raw.execute("SELECT count(*) FROM steps").fetchone() == (19,)
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute("UPDATE goals SET status='running' WHERE id='g1'")
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute("UPDATE goals SET status='nonsense' WHERE id='g0'")
        # deleting a goal still cascades (the rebuilt goals table kept its children's references)
        raw.execute("DELETE FROM goals WHERE id='g0'")
        assert raw.execute("SELECT count(*) FROM sessions WHERE goal_id='g0'").fetchone() == (0,)
    finally:
        raw.close()


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path):
    db = tmp_path / "release.db"
    _build_release_db(db)
    raw = _raw(db)
    try:  # a value the new CHECK refuses makes the rebuild of goals fail
        raw.execute("UPDATE goals SET status='weird' WHERE id='g0'")
    finally:
        raw.close()
    with pytest.raises(ConfigError) as ei:
        open_store(str(db))
    assert str(db) in str(ei.value) and "unchanged" in str(ei.value)
    raw = _raw(db)
    try:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == (RELEASE_HEAD,)
        assert raw.execute("SELECT count(*) FROM steps").fetchone() == (18,)
        assert raw.execute("PRAGMA foreign_keys").fetchone() == (1,)
    finally:
        raw.close()


def test_migration_lock_restores_foreign_keys(tmp_path: Path):
    from tenax.store.engine import make_engine

    eng = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with migration_lock(eng) as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        eng.dispose()


def test_a_database_at_head_opens_without_importing_alembic(tmp_path: Path):
    """Opening a current database reads its stamp with plain SQL; Alembic (~11 MB) loads only when
    there is something to migrate or refuse."""
    import subprocess
    import sys

    from tenax.store.migrate import shipped_head

    assert shipped_head() == script_head()  # the files' own reading agrees with Alembic's
    probe = ("import sys; from tenax.store import open_store; s = open_store(sys.argv[1]); "
             "g = s.create_goal(objective='x', model='m', workspace='/tmp'); print('alembic' in sys.modules)")
    url = f"sqlite:///{tmp_path / 't.db'}"
    opened = [subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=60)
              for _ in range(2)]
    assert [o.stdout.strip() for o in opened] == ["True", "False"], opened  # created by Alembic, then not needed
    with sqlite3.connect(tmp_path / "t.db") as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(script_head(),)]
        assert raw.execute("SELECT count(*) FROM goals").fetchone() == (2,)
