"""Project instructions (AGENTS.md / CLAUDE.md) go into the frozen system prompt, safely."""

from __future__ import annotations

from pathlib import Path

from tenax.goal.instructions import MAX_BYTES, read_instructions, system_prompt


def test_reads_agents_and_claude_md_in_order(tmp_path: Path):
    (tmp_path / "CLAUDE.md").write_text("Use tabs.\n")
    (tmp_path / "AGENTS.md").write_text("Run make lint before finishing.\n")
    (tmp_path / ".tenax").mkdir()
    (tmp_path / ".tenax" / "instructions.md").write_text("Never touch vendor/.")
    prompt = system_prompt("BASE", tmp_path)
    assert prompt.startswith("BASE")
    assert prompt.index("make lint") < prompt.index("Use tabs.") < prompt.index("vendor/")
    assert "/workspace/AGENTS.md" in prompt
    assert system_prompt("BASE", tmp_path) == prompt  # deterministic


def test_symlinks_out_of_the_workspace_are_not_read(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-HOST-FILE")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "AGENTS.md").symlink_to(secret)
    (ws / ".tenax").symlink_to(tmp_path)  # a directory link out of the workspace
    (tmp_path / "instructions.md").write_text("TOP-SECRET-TOO")
    assert read_instructions(ws) == []
    assert "TOP-SECRET" not in system_prompt("BASE", ws)


def test_symlink_inside_the_workspace_is_fine_and_size_is_capped(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("x" * (MAX_BYTES + 10))
    (tmp_path / "AGENTS.md").symlink_to(tmp_path / "docs" / "guide.md")
    [(name, text)] = read_instructions(tmp_path)
    assert name == "AGENTS.md" and text.endswith("cut at 64 KiB ...]") and text.count("x") == MAX_BYTES


def test_no_files_means_the_base_prompt_unchanged(tmp_path: Path):
    (tmp_path / "AGENTS.md").mkdir()  # not a file
    assert system_prompt("BASE", tmp_path) == "BASE"
