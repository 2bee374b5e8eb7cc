"""File tools that run INSIDE the sandbox container, as the unprivileged sandbox user.

The host (tenax.sandbox.tools.ToolBox) runs this file with ``python3 -c`` and hands it the tool
arguments as JSON, either in the env var TENAX_TOOL_ARGS or, for large payloads, in a staged file
named by TENAX_TOOL_ARGS_FILE (deleted after reading). Nothing is interpolated into a shell.
It prints one JSON object: {"ok": bool, "content": str}. Paths are resolved here, in the
container, with realpath semantics, so ``..`` and symlinks pointing outside /workspace are caught.
``cut_middle`` (the truncation every tenax output goes through) lives here so host and container
share one implementation.
Standard library only: the sandbox image has python3 but nothing else.
"""

import fnmatch
import json
import os
import re
import sys

ROOT = "/workspace"
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".tox"}
MAX_READ_LINES = 2000
MAX_LINE_CHARS = 2000
MAX_LIST_ENTRIES = 500
MAX_GREP_MATCHES = 200
MAX_GREP_FILE_BYTES = 4 * 1024 * 1024


class ToolError(Exception):
    pass


def inside(full):
    return full == ROOT or full.startswith(ROOT + "/")


def resolve(path, name="path"):
    if not isinstance(path, str) or not path.strip():
        raise ToolError(f"{name} must be a non-empty string")
    if "\x00" in path:
        raise ToolError(f"{name} contains a NUL byte")
    full = os.path.realpath(os.path.join(ROOT, path))
    if not inside(full):
        raise ToolError(f"path {path} is outside /workspace; only files under /workspace can be used")
    return full


def rel(full):
    return "." if full == ROOT else os.path.relpath(full, ROOT)


def is_binary(data):
    return b"\x00" in data[:8192]


def op_read(a):
    full = resolve(a.get("path"))
    if os.path.isdir(full):
        raise ToolError(f"{rel(full)} is a directory; use list_files to see what it holds")
    if not os.path.exists(full):
        raise ToolError(f"file {rel(full)} does not exist")
    with open(full, "rb") as fh:
        data = fh.read()
    if is_binary(data):
        raise ToolError(f"{rel(full)} looks binary ({len(data)} bytes); inspect it with bash (e.g. `od -c | head`)")
    lines = data.decode("utf-8", "replace").splitlines()
    total = len(lines)
    start = a.get("start_line") or 1
    end = a.get("end_line") or total
    if total == 0:
        return f"{rel(full)} is empty (0 lines)"
    if start > total:
        raise ToolError(f"start_line {start} is past the end of {rel(full)} ({total} lines)")
    if end < start:
        raise ToolError(f"end_line {end} is before start_line {start}")
    end = min(end, total)
    note = ""
    if end - start + 1 > MAX_READ_LINES:
        end = start + MAX_READ_LINES - 1
        note = f"\n[showing {MAX_READ_LINES} lines; call read_file with start_line={end + 1} to read on]"
    out = [f"{rel(full)}: lines {start}-{end} of {total}"]
    width = len(str(end))
    for n in range(start, end + 1):
        line = lines[n - 1]
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f" [... line cut at {MAX_LINE_CHARS} of {len(line)} chars]"
        out.append(f"{n:>{width}}\t{line}")
    return "\n".join(out) + note


def _write_text(full, text):
    mode = None
    if os.path.exists(full):
        mode = os.stat(full).st_mode & 0o7777
    tmp = f"{full}.tenax-tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", errors="replace", newline="") as fh:
        fh.write(text)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, full)


def op_write(a):
    full = resolve(a.get("path"))
    content = a.get("content")
    if os.path.isdir(full):
        raise ToolError(f"{rel(full)} is a directory; give a file path")
    parent = os.path.dirname(full)
    try:
        os.makedirs(parent, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ToolError(f"cannot create directory {rel(parent)}: a file is in the way") from None
    existed = os.path.exists(full)
    _write_text(full, content)
    size = len(content.encode("utf-8", "replace"))
    nlines = len(content.splitlines())
    return f"{'overwrote' if existed else 'created'} {rel(full)}: {size} bytes, {nlines} lines"


def op_edit(a):
    full = resolve(a.get("path"))
    old, new = a.get("old"), a.get("new")
    if old == "":
        raise ToolError("old must not be empty; to create or replace a whole file use write_file")
    if old == new:
        raise ToolError("old and new are identical; nothing would change")
    if not os.path.isfile(full):
        raise ToolError(f"file {rel(full)} does not exist")
    with open(full, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{rel(full)} is not UTF-8 text; edit it with bash instead") from None
    count = text.count(old)
    if count == 0:
        raise ToolError(
            f"old text not found in {rel(full)}; it must match exactly, including whitespace and "
            "indentation (use read_file to see the current content)"
        )
    if count > 1:
        raise ToolError(f"old text matches {count} times in {rel(full)}; include more context to make it unique")
    idx = text.index(old)
    _write_text(full, text[:idx] + new + text[idx + len(old) :])
    first = text.count("\n", 0, idx) + 1
    last = first + new.count("\n")
    return f"edited {rel(full)}: replaced 1 occurrence; new text is at lines {first}-{last}"


def op_list(a):
    full = resolve(a.get("path") or ".")
    depth = a.get("max_depth") or 3
    if not os.path.exists(full):
        raise ToolError(f"{rel(full)} does not exist")
    if not os.path.isdir(full):
        return rel(full)
    entries = []
    more = False

    def walk(d, level):
        nonlocal more
        try:
            names = sorted(os.listdir(d))
        except OSError as exc:
            entries.append(f"{rel(d)}/ [unreadable: {exc.strerror}]")
            return
        for name in names:
            if len(entries) >= MAX_LIST_ENTRIES:
                more = True
                return
            p = os.path.join(d, name)
            r = rel(p)
            if os.path.islink(p):
                entries.append(f"{r} -> {os.readlink(p)}")
            elif os.path.isdir(p):
                skipped = name in SKIP_DIRS
                entries.append(f"{r}/" + (" [not expanded]" if skipped and level < depth else ""))
                if level < depth and not skipped:
                    walk(p, level + 1)
            else:
                entries.append(r)

    walk(full, 1)
    if not entries:
        return f"{rel(full)}/ is empty"
    head = f"{rel(full)}/ (depth {depth}, {len(entries)} entries)"
    tail = f"\n[stopped at {MAX_LIST_ENTRIES} entries; list a subdirectory or lower max_depth]" if more else ""
    return head + "\n" + "\n".join(entries) + tail


def op_grep(a):
    full = resolve(a.get("path") or ".")
    pattern = a.get("pattern")
    glob = a.get("glob")
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from None
    if not os.path.exists(full):
        raise ToolError(f"{rel(full)} does not exist")
    if os.path.isdir(full):
        files = []
        for dirpath, dirnames, filenames in os.walk(full):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            files.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    else:
        files = [full]
    matches = []
    more = False
    for f in files:
        r = rel(f)
        if glob and not (fnmatch.fnmatch(os.path.basename(f), glob) or fnmatch.fnmatch(r, glob)):
            continue
        real = os.path.realpath(f)
        if not inside(real) or not os.path.isfile(real):
            continue
        try:
            if os.path.getsize(real) > MAX_GREP_FILE_BYTES:
                continue
            with open(real, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        if is_binary(data):
            continue
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if rx.search(line):
                if len(matches) >= MAX_GREP_MATCHES:
                    more = True
                    break
                if len(line) > 300:
                    line = line[:300] + " [...]"
                matches.append(f"{r}:{n}: {line}")
        if more:
            break
    if not matches:
        return f"no matches for {pattern!r} in {rel(full)}" + (f" (glob {glob!r})" if glob else "")
    tail = f"\n[stopped at {MAX_GREP_MATCHES} matches; narrow the pattern, path or glob]" if more else ""
    return "\n".join(matches) + tail


NOT_KEPT = "the full output was not kept"
# One cut's marker, newlines included. Every cut states the bytes and lines it really dropped;
# a later cut that drops a marker adds that marker's counts to its own, so no count is lost.
MARKER = re.compile(r"\n\[\.\.\. (\d+) bytes \((\d+) lines\) cut here; ([^\]\n]*) \.\.\.\]\n")


def marker(nbytes, nlines, where=NOT_KEPT):
    return f"\n[... {nbytes} bytes ({nlines} lines) cut here; {where} ...]\n"


def cut_middle(text, limit, where=NOT_KEPT):
    """Keep the head and tail of ``text`` within about ``limit`` characters; return (text, bytes
    dropped). The host (tenax.sandbox) uses this same function."""
    if not limit or len(text) <= limit:
        return text, 0
    room = max(limit - len(marker(10**12, 10**9, where)), 2)
    head_end, tail_start = room // 2, len(text) - (room - room // 2)
    for m in MARKER.finditer(text):  # never split a marker: drop it whole instead
        if m.start() < head_end < m.end():
            head_end = m.start()
        if m.start() < tail_start < m.end():
            tail_start = m.end()
    dropped = text[head_end:tail_start]
    nbytes, nlines = len(dropped.encode("utf-8", "replace")), dropped.count("\n")
    for m in MARKER.finditer(dropped):
        nbytes += int(m[1]) - len(m[0].encode("utf-8", "replace"))
        nlines += int(m[2]) - m[0].count("\n")
    return text[:head_end] + marker(nbytes, nlines, where) + text[tail_start:], nbytes


OPS = {"read": op_read, "write": op_write, "edit": op_edit, "list": op_list, "grep": op_grep}


def main():
    try:
        if os.environ.get("TENAX_TOOL_ARGS_FILE"):
            path = os.environ["TENAX_TOOL_ARGS_FILE"]
            with open(path, encoding="utf-8") as fh:
                args = json.load(fh)
            os.unlink(path)
        else:
            args = json.loads(os.environ["TENAX_TOOL_ARGS"])
        limit = args.pop("limit", 0)
        result = {"ok": True, "content": cut_middle(OPS[args.pop("op")](args), limit)[0]}
    except ToolError as exc:
        result = {"ok": False, "content": str(exc)}
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        msg = f"{exc.strerror or exc}{where}".replace(ROOT + "/", "")
        result = {"ok": False, "content": msg}
    sys.stdout.write(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
