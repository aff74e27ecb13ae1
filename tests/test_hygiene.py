"""Repository hygiene: no machine-local paths in shipped files, a short README, no dangling doc citations."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 160

# Spelled in pieces so that this file does not match its own patterns.
FORBIDDEN = (
    "/" + "work/",  # the build machine's checkout
    ".." + "/shared",  # background material beside the checkout
    "REFERENCE" + ".md",  # that material's fact sheet (ours is docs/reference.md)
    "/" + "root/",  # absolute home directories
    "/" + "home/",
)
REFERENCE_CITE = re.compile(r"docs/reference\.md\s*§\s*(\d+)")
NOTE_CITE = re.compile(r"docs/notes/([A-Za-z0-9_.\-]+\.md)")
SECTION_HEADING = re.compile(r"^#{1,6}\s*§\s*(\d+)\b", re.M)


def repo_files() -> list[Path]:
    """Tracked files plus untracked ones git does not ignore (what the next commit would ship), that exist."""
    try:
        cmd = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout: {err}")
    names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def text_files() -> dict[str, str]:
    files = {}
    for path in repo_files():
        text = text_of(path)
        if text is not None:
            files[path.relative_to(ROOT).as_posix()] = text
    return files


def test_no_machine_local_paths():
    hits = []
    for name, text in text_files().items():
        for lineno, line in enumerate(text.splitlines(), 1):
            hits += [f"{name}:{lineno}: {bad!r}" for bad in FORBIDDEN if bad in line]
    assert not hits, "machine-local paths or background files referenced:\n" + "\n".join(hits)


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, (
        f"README.md has {n} lines (at most {README_MAX_LINES}): move results to "
        f"docs/notes/ and facts to docs/reference.md"
    )


def test_doc_citations_exist():
    reference = ROOT / "docs" / "reference.md"
    sections = set(SECTION_HEADING.findall(reference.read_text())) if reference.is_file() else set()
    missing = []
    for name, text in text_files().items():
        for lineno, line in enumerate(text.splitlines(), 1):
            missing += [
                f"{name}:{lineno}: docs/reference.md has no section §{n}"
                for n in REFERENCE_CITE.findall(line)
                if n not in sections
            ]
            missing += [
                f"{name}:{lineno}: docs/notes/{note} does not exist"
                for note in NOTE_CITE.findall(line)
                if not (ROOT / "docs" / "notes" / note).is_file()
            ]
    assert not missing, "dangling citations:\n" + "\n".join(missing)
