"""One ``git worktree`` per background goal, so two goals on one repository never write the same
working tree. The worktree starts at the repository's HEAD (uncommitted changes stay behind) on
branch ``tenax/<goal id>``, which keeps the goal's work after ``tenax rm`` removes the worktree."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tenax.core.errors import ConfigError
from tenax.daemon import paths


def _git(*args: str, cwd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def repo_root(workspace: str) -> Path | None:
    """The top of the git repository holding ``workspace``, or None when it is not in one."""
    try:
        done = _git("rev-parse", "--show-toplevel", cwd=workspace)
    except (OSError, subprocess.SubprocessError):
        return None  # no git on this machine: not a repository as far as tenax can tell
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 else None


def require_commit(repo: Path) -> None:
    if _git("rev-parse", "--verify", "-q", "HEAD", cwd=repo).returncode != 0:
        raise ConfigError(f"{repo} has no commit yet, so a worktree cannot start from it; commit once, "
                          "or pass --no-worktree to work in the repository itself")


def add(repo: Path, workspace: str, goal_id: str) -> dict[str, str]:
    """Create the goal's worktree; returns ``{"repo", "path", "branch", "workspace"}`` (the workspace
    is the same sub-directory of the worktree as the given one is of the repository)."""
    path, branch = paths.worktrees() / goal_id, f"tenax/{goal_id}"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _git("worktree", "add", "-b", branch, str(path), "HEAD", cwd=repo)
    if done.returncode != 0:
        raise ConfigError(f"git worktree add failed in {repo}: {done.stderr.strip()[-500:]}; "
                          "fix the repository or pass --no-worktree")
    sub = Path(workspace).resolve().relative_to(repo)
    return {"repo": str(repo), "path": str(path), "branch": branch, "workspace": str(path / sub)}


def remove(info: dict[str, str]) -> bool:
    """Remove the worktree (its branch stays: it holds the goal's work). False when git refused."""
    if not Path(info["path"]).exists():
        return True
    return _git("worktree", "remove", "--force", info["path"], cwd=info["repo"]).returncode == 0
