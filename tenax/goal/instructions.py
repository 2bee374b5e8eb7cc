"""Project instructions: the repository's own agent guide, frozen into the session's system prompt.

Like Claude Code and Codex, tenax reads ``AGENTS.md``, ``CLAUDE.md`` or ``.tenax/instructions.md``
from the workspace root when the main session is created. The text becomes part of the frozen,
cache-stable prefix; edits made later (even by the agent) do not move it.

The files are read on the host, so a hostile repository must not be able to point them anywhere
else: anything that is not a regular file, or resolves (through symlinks) outside the workspace, is
skipped, and
each file is capped in size.
"""

from __future__ import annotations

from pathlib import Path

INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md", ".tenax/instructions.md")
MAX_BYTES = 64 * 1024


def read_instructions(workspace: str | Path) -> list[tuple[str, str]]:
    """(relative name, text) for each instruction file that is safe to read, in a fixed order."""
    root = Path(workspace).resolve()
    found: list[tuple[str, str]] = []
    for name in INSTRUCTION_FILES:
        path = root / name
        try:
            # resolve() follows every symlink: whatever it lands on must be a file inside the workspace
            if not path.is_file() or root not in path.resolve().parents:
                continue
            data = path.read_bytes()[: MAX_BYTES + 1]
        except OSError:
            continue
        text = data[:MAX_BYTES].decode("utf-8", errors="replace").strip()
        if len(data) > MAX_BYTES:
            text += f"\n[... {name} cut at {MAX_BYTES // 1024} KiB ...]"
        if text:
            found.append((name, text))
    return found


def system_prompt(base: str, workspace: str | Path) -> str:
    parts = [base]
    for name, text in read_instructions(workspace):
        parts.append(f"\n# Project instructions from /workspace/{name}\n\n{text}\n")
    return "".join(parts)
