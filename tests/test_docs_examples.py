"""Every example in README.md and docs/ runs, so a renamed option or a changed return type
fails here rather than in a reader's hands.

Each page's fenced ``python`` blocks run in order in one namespace, and its ``bash``,
``sh`` and ``console`` blocks as bash scripts (``set -euo pipefail``), all in one scratch
directory per page that holds ``corpus.txt`` (the first 200,000 tokens of the shipped
corpus, which also stands in for the shipped corpus wherever an example trains on it). A
block right after an HTML comment ``<!-- not-run: REASON -->`` is skipped (GPU,
Ray, installs, full-size benchmarks). To keep the whole file well under a minute, examples
run with small settings: ``embedtrain.train`` gets ``dim=8`` and at most 2 epochs (a
resumed run keeps its saved settings), and every ``embedtrain train`` command line gets
``--dim 8 --epochs 1`` appended (unless it resumes), and ``corpus.txt`` where it names no
corpus.

The training-options table in docs/guide/options.md is generated from the Settings fields'
metadata; this file checks it is current, and ``python tests/test_docs_examples.py``
rewrites it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGES = [p for p in PAGES if "results" not in p.relative_to(ROOT).parts]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.*?)\s*-->")
RUNNABLE = {"python": "python", "bash": "bash", "sh": "bash", "console": "bash"}
SMALL_CLI = "--dim 8 --epochs 1"


def blocks(page: Path) -> list[tuple[str, str, int, str | None]]:
    """(language, code, line number, the not-run reason or None) of every fenced block."""
    found = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group("lang"):
            i += 1
            continue
        indent, lang, start = m.group("indent"), m.group("lang"), i + 1
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        code = "\n".join(line[len(indent) :] for line in lines[i + 1 : j])
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        reason = m2.group("reason") if (m2 := NOT_RUN.search(before)) else None
        found.append((lang, code, start, reason))
        i = j + 1
    return found


def small_command_lines(script: str) -> str:
    """``embedtrain train`` commands with small settings appended (not to a resume)."""
    out = []
    for line in script.splitlines():
        if re.match(r"\s*embedtrain train\b", line):
            command, hash_, comment = line.partition(" #")
            if re.match(r"\s*embedtrain train +-", command):  # no corpus: the shipped one
                command = command.replace("embedtrain train", "embedtrain train corpus.txt", 1)
            if "--resume" not in command:
                command = f"{command.rstrip()} {SMALL_CLI}"
            line = command + (f"  #{comment}" if hash_ else "")
        out.append(line)
    return "\n".join(out)


def console_to_bash(code: str) -> str:
    """A ``console`` block's commands: the lines after a ``$ `` prompt."""
    return "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))


PROLOGUE = """
import embedtrain as _embedtrain

_train = _embedtrain.train


def _small_train(corpus=None, **options):
    if corpus is None:  # the shipped corpus: its first 200,000 tokens
        corpus = "corpus.txt"
    if "resume" not in options:
        options["dim"] = 8
        options["epochs"] = min(options.get("epochs", 1), 2)
    options.setdefault("progress", False)
    return _train(corpus, **options)


_embedtrain.train = _small_train
"""


@pytest.fixture(scope="module")
def corpus_prefix(tmp_path_factory) -> Path:
    from benchmarks.common import write_prefix

    path = tmp_path_factory.mktemp("docs-corpus") / "corpus.txt"
    write_prefix(None, 200_000, path)
    return path


def runnable_pages() -> list[Path]:
    return [p for p in PAGES if any(b[0] in RUNNABLE and b[3] is None for b in blocks(p))]


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(page, tmp_path, corpus_prefix, monkeypatch):
    (tmp_path / "corpus.txt").write_bytes(corpus_prefix.read_bytes())
    monkeypatch.chdir(tmp_path)
    import embedtrain

    monkeypatch.setattr(embedtrain, "train", embedtrain.train)  # restored after the page
    namespace: dict = {"__name__": "__docs_example__"}
    exec(PROLOGUE, namespace)  # noqa: S102 (running the examples is the point)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    shell_prologue = (
        f'set -euo pipefail\npython() {{ "{sys.executable}" "$@"; }}\n'
        f'embedtrain() {{ "{sys.executable}" -m embedtrain "$@"; }}\n'
    )
    for lang, code, line, reason in blocks(page):
        if lang not in RUNNABLE or reason is not None:
            continue
        where = f"{page.relative_to(ROOT)}:{line}"
        if RUNNABLE[lang] == "python":
            try:
                exec(compile(textwrap.dedent(code), where, "exec"), namespace)  # noqa: S102
            except Exception as exc:  # noqa: BLE001 (any failure of an example)
                pytest.fail(f"{where}: the python example fails: {type(exc).__name__}: {exc}")
        else:
            script = console_to_bash(code) if lang == "console" else code
            done = subprocess.run(
                ["bash", "-c", shell_prologue + small_command_lines(script)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(
                    f"{where}: the shell example fails (exit {done.returncode}):\n"
                    f"{script}\n--- stderr ---\n{done.stderr[-2000:]}"
                )


def test_every_block_is_run_or_says_why_not():
    """A block in a runnable language either runs or carries a not-run reason; a fence
    whose language is not one we know is an error (e.g. a typo for ``python``)."""
    known = set(RUNNABLE) | {"text", "json", "yaml", "toml", "ini", "markdown"}
    for page in PAGES:
        for lang, _, line, reason in blocks(page):
            assert lang in known, f"{page.relative_to(ROOT)}:{line}: unknown fence {lang!r}"
            if reason is not None:
                assert reason, f"{page.relative_to(ROOT)}:{line}: not-run without a reason"


# --- the training-options table -------------------------------------------------------

OPTIONS_PAGE = ROOT / "docs" / "guide" / "options.md"
BEGIN, END = "<!-- options-table: begin -->", "<!-- options-table: end -->"


def options_table() -> str:
    """The training options as a Markdown table, from ``embedtrain.settings.OPTIONS``."""
    from embedtrain.cli import _what_heads_say
    from embedtrain.settings import OPTIONS

    say = _what_heads_say()
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for spec in OPTIONS:
        about = spec.metadata
        name = (
            f"`--{spec.name.replace('_', '-')}`"
            if about["command_line"]
            else f"`{spec.name}` (Python only)"
        )
        if about["choices"]:
            name += " " + " \\| ".join(f"`{c}`" for c in about["choices"])
        shown = about["default_text"]
        if shown is None:
            shown = f"{spec.default:,}" if isinstance(spec.default, int) else f"{spec.default}"
        shown = shown.format(**say) if shown else "(none)"
        note = f" ({about['note']})" if about["note"] else ""
        meaning = about["help"].format(**say) + note
        rows.append(f"| {name} | {_cell(shown)} | {_cell(meaning)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _with_table(page: str) -> str:
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{options_table()}\n{END}{tail}"


def test_options_table_is_current():
    page = OPTIONS_PAGE.read_text(encoding="utf-8")
    assert BEGIN in page and END in page
    assert page == _with_table(page), (
        "docs/guide/options.md is out of date: run python tests/test_docs_examples.py"
    )


if __name__ == "__main__":
    OPTIONS_PAGE.write_text(_with_table(OPTIONS_PAGE.read_text(encoding="utf-8")), "utf-8")
    print(f"rewrote the options table in {OPTIONS_PAGE.relative_to(ROOT)}")


def test_readme_links_resolve():
    """README.md is not part of the MkDocs build, so its links are checked here: every
    relative link names a file of the repository, every #anchor one of its headings."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    }
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            assert target[1:] in anchors, f"README.md: no heading for {target}"
        else:
            assert (ROOT / target.split("#")[0]).exists(), f"README.md: {target} does not exist"
