"""Sub-agent roles: built-in presets plus user-defined ones from ``<workspace>/.tenax/agents/*.md``.

A role is a system prompt, a tool allowlist, an optional default model and a turn limit.

- ``explorer``: read-only investigation with ``read_file``, ``list_files`` and ``grep``. It gets
  no ``bash``: a shell can write, and an explorer runs on the same workspace as the parent, so
  read-only must mean read-only. Give a user-defined role ``bash`` when commands are needed.
- ``worker``: every sandbox tool (and, below the depth limit, the spawn tools).
- ``reviewer``: read-only; judges a change against an objective, and its report carries
  ``passed`` (the no-check judge is a reviewer).

A user role file is YAML front matter then the system prompt::

    ---
    name: tester
    description: runs the test suite and reports failures
    model: anthropic:claude-haiku-4-5
    tools: [bash, read_file, grep]
    max_turns: 15
    ---
    You run tests ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tenax.core.errors import ConfigError

READ_ONLY_TOOLS = ("read_file", "list_files", "grep")
SANDBOX_TOOLS = ("bash", "read_file", "write_file", "edit_file", "list_files", "grep")
SPAWN_TOOLS = ("spawn_agent", "wait_agents", "list_agents")
DEFAULT_MAX_TURNS = 20

_COMMON = """\
You are a tenax sub-agent: a focused helper working for a lead agent on one task, inside a \
sandboxed Linux container with the repository at /workspace. You see only your task, not the \
lead's conversation. There is no user to ask: decide and proceed. When you are done (or cannot \
get further), call the report tool once with your structured result; the lead sees only that \
report, so put every finding it needs there.
"""

BUILTIN_PROMPTS = {
    "explorer": _COMMON + "Your role: explorer. Investigate and explain; you have read-only tools and must not "
    "try to change anything. Report concrete facts with file paths and line numbers.\n",
    "worker": _COMMON + "Your role: worker. Make the change the task asks for, verify it by running it, and "
    "report what you changed and how you verified it.\n",
    "reviewer": _COMMON + "Your role: reviewer. Judge strictly whether the work meets the stated objective, "
    "inspecting the workspace with your read-only tools. Report passed=true only if the objective is fully "
    "met; otherwise passed=false with concrete reasons and what is missing.\n",
}


@dataclass(frozen=True)
class Role:
    name: str
    system: str
    tools: tuple[str, ...]  # allowlist; spawn tools are added by the runtime when allowed
    description: str = ""
    model: str | None = None
    max_turns: int = DEFAULT_MAX_TURNS
    source: str = "builtin"
    extra: dict[str, Any] = field(default_factory=dict)


BUILTIN_ROLES: dict[str, Role] = {
    "explorer": Role("explorer", BUILTIN_PROMPTS["explorer"], READ_ONLY_TOOLS, "read-only investigation"),
    "worker": Role("worker", BUILTIN_PROMPTS["worker"], SANDBOX_TOOLS + SPAWN_TOOLS, "makes changes; all tools"),
    "reviewer": Role("reviewer", BUILTIN_PROMPTS["reviewer"], READ_ONLY_TOOLS, "judges work against the objective"),
}

_KNOWN_TOOLS = frozenset(SANDBOX_TOOLS + SPAWN_TOOLS)
_KEYS = frozenset({"name", "description", "model", "tools", "max_turns"})


def parse_role_file(path: Path) -> Role:
    """One ``.md`` role file; a ConfigError names the file and says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"role file {path}: cannot read it: {e}") from None
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ConfigError(f"role file {path}: must start with a '---' line opening the YAML front matter")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise ConfigError(f"role file {path}: the YAML front matter is not closed by a '---' line")
    try:
        meta = yaml.safe_load("".join(lines[1:end])) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"role file {path}: invalid YAML front matter: {e}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"role file {path}: the front matter must be a mapping (name: ..., tools: ...)")
    unknown = sorted(set(map(str, meta)) - _KEYS)
    if unknown:
        raise ConfigError(f"role file {path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    name = meta.get("name")
    if not isinstance(name, str) or not name.strip() or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"role file {path}: 'name' must be a word (letters, digits, - or _), got {name!r}")
    tools = meta.get("tools", list(READ_ONLY_TOOLS))
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise ConfigError(f"role file {path}: 'tools' must be a list of tool names")
    bad = sorted(set(tools) - _KNOWN_TOOLS)
    if bad:
        raise ConfigError(f"role file {path}: unknown tool(s) {', '.join(bad)}; known: {', '.join(sorted(_KNOWN_TOOLS))}")
    model = meta.get("model")
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"role file {path}: 'model' must be a model spec like anthropic:claude-haiku-4-5")
        from tenax.harness.registry import parse_model_spec

        try:
            parse_model_spec(model)
        except ConfigError as e:
            raise ConfigError(f"role file {path}: bad model: {e}") from None
    max_turns = meta.get("max_turns", DEFAULT_MAX_TURNS)
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise ConfigError(f"role file {path}: 'max_turns' must be a positive integer, got {max_turns!r}")
    description = meta.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"role file {path}: 'description' must be a string")
    body = "".join(lines[end + 1 :]).strip()
    if not body:
        raise ConfigError(f"role file {path}: the body (the role's system prompt) is empty")
    return Role(name=name.strip(), system=_COMMON + body + "\n", tools=tuple(tools), description=description,
                model=model, max_turns=max_turns, source=str(path))


def load_roles(workspace: str | Path | None) -> dict[str, Role]:
    """Built-in roles, overridden/extended by ``<workspace>/.tenax/agents/*.md`` (sorted by name)."""
    roles = dict(BUILTIN_ROLES)
    if workspace is None:
        return roles
    folder = Path(workspace) / ".tenax" / "agents"
    if not folder.is_dir():
        return roles
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.md")):
        role = parse_role_file(path)
        if role.name in seen:
            raise ConfigError(f"role file {path}: role {role.name!r} is already defined in {seen[role.name]}")
        seen[role.name] = path
        roles[role.name] = role
    return roles
