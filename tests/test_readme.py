"""The README runs as written: every ```python block in order in one fresh session, and every
``geocausal`` line of the ```bash blocks, in a temporary working folder with a temporary user
data folder. ``make`` and ``pip`` lines (set-up, not usage) are skipped by an explicit rule;
any other command in a bash block fails the test, so nothing in the README goes unrun."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: commands of ```bash blocks that are set-up, not usage: never run by this test
SKIPPED_COMMANDS = ("make", "pip")


def blocks(text: str, lang: str) -> list[str]:
    """The bodies of the fenced ```lang blocks of a Markdown text, in order."""
    return re.findall(rf"^```{lang}[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.M | re.S)


def command_lines(block: str) -> list[str]:
    """Shell commands of a bash block: continuation lines joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n", " ", block)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(line.strip())
    return out


def test_block_extraction_rules():
    text = "x\n```python\na = 1\n```\n```bash\nmake demo  # set-up\n" \
           "geocausal demo \\\n  --out r\n# a comment\n```\n"
    assert blocks(text, "python") == ["a = 1\n"]
    lines = command_lines(blocks(text, "bash")[0])
    assert lines == ["make demo  # set-up", "geocausal demo    --out r"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GEOCAUSAL_DATA_DIR": str(tmp_path / "user-data"), "MPLBACKEND": "Agg",
                "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    bindir = str(Path(sys.executable).parent)  # the venv's geocausal console script
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def test_readme_runs_as_written(tmp_path):
    text = README.read_text()
    py = blocks(text, "python")
    bash = blocks(text, "bash")
    assert len(py) >= 2 and len(bash) >= 2
    work = tmp_path / "work"
    work.mkdir()
    env = _env(tmp_path)

    # every python block, in order, in one fresh interpreter (names flow from block to block)
    script = "\n\n".join(f"# --- README python block {i + 1}\n{b}" for i, b in enumerate(py))
    (work / "readme_blocks.py").write_text(script)
    r = subprocess.run([sys.executable, "readme_blocks.py"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]

    # every CLI line of the bash blocks, in order, through bash (globs expand as for a user)
    ran = 0
    for block in bash:
        for line in command_lines(block):
            cmd = shlex.split(line, comments=True)[0]
            if cmd in SKIPPED_COMMANDS:
                continue
            assert cmd == "geocausal", f"README bash line is neither geocausal nor set-up: {line}"
            r = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True,
                               text=True, timeout=900)
            assert r.returncode == 0, f"{line}\n{r.stderr[-3000:]}"
            ran += 1
    assert ran >= 4
    # the CLI wrote under its --out folders and the user data folder, nowhere else
    assert (work / "results" / "aipw" / "aipw.csv").is_file()
    assert (tmp_path / "user-data" / "studies" / "demo.yaml").is_file()
    assert not list((ROOT / "geocausal").rglob("*.gpkg"))
