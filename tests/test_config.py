"""Config layering through the real CLI: user file < project file < TENAX_* env; `tenax config
show` names each value's origin; a bad file is refused naming the file and the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def show(home: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TENAX_")}
    return subprocess.run([sys.executable, "-m", "tenax.cli", "config", "show"], cwd=cwd, capture_output=True, text=True,
                          env={**base, "XDG_CONFIG_HOME": str(home), **env}, timeout=120)


def setup(tmp_path: Path, user: str, project: str) -> tuple[Path, Path, Path, Path]:
    home, proj = tmp_path / "cfg", tmp_path / "repo"
    (home / "tenax").mkdir(parents=True)
    (proj / ".tenax").mkdir(parents=True)
    (proj / "sub").mkdir()
    uf, pf = home / "tenax" / "config.toml", proj / ".tenax" / "config.toml"
    uf.write_text(user)
    pf.write_text(project)
    return home, proj, uf, pf


def test_layers_and_origins(tmp_path):
    home, proj, uf, pf = setup(tmp_path, 'model = "openai:gpt-5"\nimage = "u:1"\nconcurrency = 2\n',
                               'image = "p:1"\nallow_hosts = ["pypi.org"]\nnotify = "echo done"\n')
    r = show(home, proj / "sub", TENAX_CONCURRENCY="9")  # found from a subdirectory of the project
    assert r.returncode == 0, r.stderr
    lines = dict(ln.split(" = ", 1) for ln in r.stdout.splitlines() if not ln.startswith("#"))
    assert lines["model"] == f'"openai:gpt-5"  # {uf}'
    assert lines["image"] == f'"p:1"  # {pf}'  # project over user
    assert lines["allow_hosts"] == f'["pypi.org"]  # {pf}' and lines["notify"] == f'"echo done"  # {pf}'
    assert lines["concurrency"] == "9  # env TENAX_CONCURRENCY"  # env over both
    assert lines["exec_timeout"] == "120.0  # default"


def test_bad_files_name_the_file_and_the_key(tmp_path):
    home, proj, uf, pf = setup(tmp_path, "concurrency = \"many\"\n", "")
    r = show(home, proj)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"bad setting 'concurrency' in config file {uf}" in r.stderr
    pf.write_text("imagee = \"x\"\n")
    r = show(home, proj)
    assert f"config file {pf}: unknown key 'imagee'" in r.stderr and "Traceback" not in r.stderr
    pf.write_text("image = \n")
    r = show(home, proj)
    assert f"cannot read config file {pf}" in r.stderr and "Traceback" not in r.stderr
    r = show(home, tmp_path, TENAX_CONCURRENCY="x")
    assert "bad setting 'concurrency' in TENAX_CONCURRENCY" in r.stderr and "Traceback" not in r.stderr
