"""The model's tools over a sandbox: bash, read_file, write_file, edit_file, list_files, grep.

``ToolBox.call`` never raises: hostile, missing or wrong-typed arguments, unknown tools and
sandbox failures all come back as ``ToolOutcome(is_error=True, content=<what went wrong>)`` so
the goal loop can hand them to the model and go on. File tools run inside the container as the
sandbox user (see ``_incontainer.py``); arguments travel as JSON in an env var or a staged file,
never through shell interpolation. Outputs are bounded (head + tail kept).
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

from tenax.core.errors import TenaxError
from tenax.core.messages import ToolSpec
from tenax.core.protocols import ToolOutcome
from tenax.core.protocols import Sandbox
from tenax.sandbox._incontainer import cut_middle

_SCRIPT = (Path(__file__).parent / "_incontainer.py").read_text(encoding="utf-8")
_ENV_ARGS_LIMIT = 32_000  # larger argument payloads are staged as a file in /tmp
_RUN_SCRIPT = 'exec python3 -c "$TENAX_TOOL_SCRIPT"'

_PATH_NOTE = "Relative to /workspace (absolute paths must be inside /workspace)."

# name -> (description, {param: (json type, required, description, extra schema)})
_TOOLS: dict[str, tuple[str, dict[str, tuple[str, bool, str, dict]]]] = {
    "bash": (
        "Run a bash command in the sandbox (Debian, non-root user, cwd /workspace, usually no network) "
        "and get its exit code, stdout and stderr. Each call is a fresh `bash -lc`: shell state such as "
        "`cd` or exported variables does not persist between calls, files do. Every process the command "
        "started, background ones included, is killed when it returns or at the timeout. Only /workspace, "
        "/tmp and $HOME are writable (/tmp and $HOME are small). Long output is cut in the middle; "
        "redirect it to a file and read that in parts.",
        {
            "command": ("string", True, "The bash command line to run.", {}),
            "timeout": ("number", False, "Seconds before the command is killed (default 120).", {"exclusiveMinimum": 0}),
        },
    ),
    "read_file": (
        "Read a text file with numbered lines. Optionally give a 1-based inclusive line range; the header "
        "shows the total number of lines. At most 2000 lines are shown per call.",
        {
            "path": ("string", True, "File to read. " + _PATH_NOTE, {}),
            "start_line": ("integer", False, "First line to show (1-based, default 1).", {"minimum": 1}),
            "end_line": ("integer", False, "Last line to show, inclusive (default: end of file).", {"minimum": 1}),
        },
    ),
    "write_file": (
        "Create or overwrite a file with the given content, creating parent directories as needed. "
        "Use edit_file for small changes to an existing file.",
        {
            "path": ("string", True, "File to write. " + _PATH_NOTE, {}),
            "content": ("string", True, "The complete new content of the file.", {}),
        },
    ),
    "edit_file": (
        "Replace one exact occurrence of `old` with `new` in a file. `old` must match the file exactly "
        "(whitespace and indentation included) and occur exactly once; if it occurs several times, "
        "include more surrounding lines to make it unique.",
        {
            "path": ("string", True, "File to edit. " + _PATH_NOTE, {}),
            "old": ("string", True, "The exact text to replace (must be unique in the file).", {}),
            "new": ("string", True, "The replacement text.", {}),
        },
    ),
    "list_files": (
        "List files and directories (directories end with '/', symlinks show their target). "
        ".git, node_modules, __pycache__ and virtualenvs are not expanded.",
        {
            "path": ("string", False, "Directory to list (default '.'). " + _PATH_NOTE, {}),
            "max_depth": ("integer", False, "How many levels to descend (default 3).", {"minimum": 1, "maximum": 20}),
        },
    ),
    "grep": (
        "Search text files for a Python regular expression; prints `path:line: text` for each matching "
        "line (at most 200). Binary files and .git/node_modules/virtualenvs are skipped.",
        {
            "pattern": ("string", True, "Python regular expression (re module syntax).", {}),
            "path": ("string", False, "File or directory to search (default '.'). " + _PATH_NOTE, {}),
            "glob": ("string", False, "Only search files whose name or relative path matches, e.g. '*.py'.", {}),
        },
    ),
}

_OPS = {"read_file": "read", "write_file": "write", "edit_file": "edit", "list_files": "list", "grep": "grep"}


class _BadArgs(Exception):
    pass


def _validate(name: str, arguments: Any) -> dict[str, Any]:
    params = _TOOLS[name][1]
    if not isinstance(arguments, dict):
        raise _BadArgs(f"arguments for {name} must be a JSON object, got {type(arguments).__name__}")
    unknown = sorted(str(k) for k in arguments if k not in params)
    if unknown:
        raise _BadArgs(f"{name} got unknown argument(s) {', '.join(unknown)}; it accepts: {', '.join(params)}")
    out: dict[str, Any] = {}
    for key, (jtype, required, _desc, extra) in params.items():
        value = arguments.get(key)
        if value is None:
            if required:
                raise _BadArgs(f"{name} needs the argument '{key}' ({jtype})")
            continue
        if jtype == "string":
            if not isinstance(value, str):
                raise _BadArgs(f"argument '{key}' of {name} must be a string, got {type(value).__name__}")
            if "\x00" in value:
                raise _BadArgs(f"argument '{key}' of {name} contains a NUL byte")
        elif jtype in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _BadArgs(f"argument '{key}' of {name} must be a {jtype}, got {type(value).__name__}")
            if not math.isfinite(value):
                raise _BadArgs(f"argument '{key}' of {name} must be finite")
            if jtype == "integer":
                if value != int(value):
                    raise _BadArgs(f"argument '{key}' of {name} must be a whole number, got {value}")
                value = int(value)
            if "minimum" in extra and value < extra["minimum"]:
                raise _BadArgs(f"argument '{key}' of {name} must be >= {extra['minimum']}, got {value}")
            if "maximum" in extra and value > extra["maximum"]:
                raise _BadArgs(f"argument '{key}' of {name} must be <= {extra['maximum']}, got {value}")
            if "exclusiveMinimum" in extra and value <= extra["exclusiveMinimum"]:
                raise _BadArgs(f"argument '{key}' of {name} must be > {extra['exclusiveMinimum']}, got {value}")
        out[key] = value
    return out


class ToolBox:
    """Tools for a model, executed in ``sandbox`` (any started or startable Sandbox)."""

    def __init__(
        self, sandbox: Sandbox, *, exec_timeout: float = 120.0, max_timeout: float = 3600.0, max_output_chars: int = 20_000
    ):
        self.sandbox = sandbox
        self.exec_timeout = float(exec_timeout)
        self.max_timeout = float(max_timeout)
        self.max_output_chars = max_output_chars

    def specs(self) -> list[ToolSpec]:
        """Tool specs in a stable order with deterministic JSON schemas."""
        specs = []
        for name, (desc, params) in _TOOLS.items():
            props = {}
            for key, (jtype, _req, pdesc, extra) in params.items():
                props[key] = {"type": jtype, "description": pdesc, **extra}
            schema = {
                "type": "object",
                "properties": props,
                "required": [k for k, p in params.items() if p[1]],
                "additionalProperties": False,
            }
            specs.append(ToolSpec(name=name, description=desc, parameters=schema))
        return specs

    def call(self, name: str, arguments: dict) -> ToolOutcome:
        """Run tool ``name``; never raises (errors come back with ``is_error=True``)."""
        try:
            if not isinstance(name, str) or name not in _TOOLS:
                return self._error(f"unknown tool {name!r}; available tools: {', '.join(_TOOLS)}")
            args = _validate(name, arguments)
            if name == "bash":
                return self._bash(args)
            return self._file_tool(_OPS[name], args)
        except _BadArgs as exc:
            return self._error(str(exc))
        except TenaxError as exc:
            return self._error(f"{name} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a tool failure must never end the run
            return self._error(f"{name} failed unexpectedly: {exc.__class__.__name__}: {exc}")

    # -- helpers -----------------------------------------------------------------------------

    def _bound(self, text: str) -> str:
        return cut_middle(text, self.max_output_chars)[0]

    def _error(self, message: str) -> ToolOutcome:
        return ToolOutcome(content=self._bound(message), is_error=True)

    def _bash(self, args: dict[str, Any]) -> ToolOutcome:
        timeout = min(float(args.get("timeout") or self.exec_timeout), self.max_timeout)
        # stdout and stderr share the output budget, so the whole answer needs no further cut
        res = self.sandbox.exec(args["command"], timeout=timeout, max_output_chars=self.max_output_chars // 2)
        parts = []
        if res.timed_out:
            killed = (
                "was killed together with every process it started"
                if not res.left_running
                else f"was killed, but {res.left_running} process(es) it started could not be killed"
            )
            parts.append(
                f"TIMED OUT: the command was still running after {timeout:g}s and {killed} (exit code "
                f"{res.exit_code}). Output so far is below. Use a larger timeout, or make the command faster."
            )
        else:
            parts.append(f"exit code: {res.exit_code}")
        if res.note:
            parts.append(f"NOTE from the sandbox: {res.note}")
        if res.stdout:
            parts.append("--- stdout ---\n" + res.stdout.rstrip("\n"))
        if res.stderr:
            parts.append("--- stderr ---\n" + res.stderr.rstrip("\n"))
        if not res.stdout and not res.stderr:
            parts.append("(no output)")
        return ToolOutcome(content=self._bound("\n".join(parts)), is_error=res.timed_out)

    def _file_tool(self, op: str, args: dict[str, Any]) -> ToolOutcome:
        fast = getattr(self.sandbox, "file_op", None)  # a sandbox's own file-tool path, when it has one
        result = fast({"op": op, "limit": self.max_output_chars, **args}) if fast else None
        if result is not None:
            return ToolOutcome(content=self._bound(str(result["content"])), is_error=not result["ok"])
        payload = json.dumps({"op": op, "limit": self.max_output_chars, **args}, ensure_ascii=True)
        env = {"TENAX_TOOL_SCRIPT": _SCRIPT}
        if len(payload) <= _ENV_ARGS_LIMIT:
            env["TENAX_TOOL_ARGS"] = payload
        else:
            staged = f".tenax-args-{uuid.uuid4().hex}.json"
            self.sandbox.put_file("/tmp", staged, payload.encode("ascii"))
            env["TENAX_TOOL_ARGS_FILE"] = f"/tmp/{staged}"
        # The JSON reply carries content already bounded in-container; let it through whole.
        res = self.sandbox.exec(
            _RUN_SCRIPT, timeout=self.exec_timeout, env=env, max_output_chars=8 * self.max_output_chars + 4096
        )
        if res.timed_out:
            return self._error(f"the {op} operation timed out after {self.exec_timeout:g}s")
        note = f"\nNOTE from the sandbox: {res.note}" if res.note else ""
        try:
            result = json.loads(res.stdout)
            content, ok = str(result["content"]), bool(result["ok"])
        except (ValueError, KeyError, TypeError):
            detail = (res.stderr or res.stdout).strip() or "no output"
            return self._error(f"the {op} operation failed in the sandbox (exit code {res.exit_code}): {detail}{note}")
        return ToolOutcome(content=self._bound(content + note), is_error=not ok)
