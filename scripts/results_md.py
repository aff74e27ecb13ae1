# Regenerate docs/results.md from the benchmarks' result records: `python scripts/results_md.py [--check]`.
"""docs/results.md is generated, never edited: one section per record in benchmarks/results/*.json (sorted by file
name), each with its title, the exact command, the git commit, the CPU, the thread counts, the seeds and the date,
then its tables as Markdown, the paper's numbers in their own columns beside ours where the benchmark has them.
The output depends only on the records (no generation time), so ``--check`` can tell whether the committed page
matches the committed records: it writes nothing and exits 1 with a message when they differ.

A record is a JSON object whose ``schema`` is "swm-benchmark-record/1" (benchmarks/common.py writes them); other
JSON files in the folder (a benchmark's raw outputs, e.g. success_table_quick.json) are not records and are
skipped.
"""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "swm-benchmark-record/1"
REQUIRED_FIELDS = ("schema", "benchmark", "config", "title", "command", "git", "cpu", "cpu_count", "threads", "seeds",
                   "date", "quick", "seconds", "tables")
TABLE_FIELDS = ("title", "columns", "rows")


@dataclass
class Args:
    check: bool = False
    """write nothing; exit 1 if the output file differs from what the records give"""
    results_dir: str = "benchmarks/results"
    """folder of the records (relative to the repository root, or absolute)"""
    output: str = "docs/results.md"
    """the Markdown file to write or check (relative to the repository root, or absolute)"""


def load_records(results_dir: Path) -> list[tuple[str, dict]]:
    """(file name, record) for every record in ``results_dir``, sorted by file name; a JSON file without a
    ``schema`` entry is skipped, a record with a missing field is an error naming the file and the field."""
    records = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, dict) or "schema" not in data:
            continue
        if data["schema"] != SCHEMA:
            raise ValueError(f"{path}: unknown record schema {data['schema']!r} (this script reads {SCHEMA!r})")
        missing = [f for f in REQUIRED_FIELDS if f not in data]
        if missing:
            raise ValueError(f"{path}: the record lacks {missing}")
        for k, tab in enumerate(data["tables"]):
            lacking = [f for f in TABLE_FIELDS if f not in tab]
            if lacking:
                raise ValueError(f"{path}: table {k} lacks {lacking}")
            bad = [row for row in tab["rows"] if len(row) != len(tab["columns"])]
            if bad:
                raise ValueError(f"{path}: table {tab['title']!r} has rows that do not match its "
                                 f"{len(tab['columns'])} columns: {bad[0]}")
        records.append((path.name, data))
    return records


def escape(text: str) -> str:
    """A Markdown table cell: pipes escaped, on one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def cell(value, spec: str | None = None) -> str:
    """One value as table text: None '–', bools yes/no, numbers with ``spec`` (default: 4 significant digits for
    floats), lists joined by '/'."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "/".join(cell(v, spec) for v in value)
    if isinstance(value, (int, float)):
        try:
            return format(value, spec or ("d" if isinstance(value, int) else ".4g"))
        except ValueError:
            return str(value)
    return escape(value)


def numeric(values: list) -> bool:
    """Whether a column holds numbers only (right-aligned then)."""
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def markdown_table(tab: dict) -> list[str]:
    formats = tab.get("formats") or {}
    columns = tab["columns"]
    lines = ["| " + " | ".join(escape(c) for c in columns) + " |",
             "|" + "|".join("---:" if numeric([row[i] for row in tab["rows"]]) else "---"
                            for i in range(len(columns))) + "|"]
    for row in tab["rows"]:
        lines.append("| " + " | ".join(cell(v, formats.get(c)) for c, v in zip(columns, row)) + " |")
    return lines


def anchor(name: str) -> str:
    """The heading anchor GitHub gives a heading text."""
    return "".join(c for c in name.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def heading(record: dict) -> str:
    return f"{record['benchmark']}, {record['config']}"


def section(name: str, record: dict) -> list[str]:
    git = record["git"] or {}
    commit = git.get("commit")
    commit_text = "unknown" if not commit else f"`{commit[:12]}`" + (
        " (with uncommitted changes)" if git.get("dirty") else "" if git.get("dirty") is False else " (tree state unknown)")
    threads = ", ".join(f"{k} {v}" for k, v in record["threads"].items() if v is not None) or "–"
    seconds = record["seconds"]
    lines = [f"## {heading(record)}", "", f"**{escape(record['title'])}**", "",
             f"- command: `{record['command']}`",
             f"- commit: {commit_text}",
             f"- CPU: {escape(record['cpu'])} ({record['cpu_count']} CPUs); threads: {threads}",
             f"- seeds: {', '.join(str(s) for s in record['seeds']) or '–'}",
             f"- date: {record['date']}" + ("" if seconds is None else f"; run time {seconds:,.0f} s")
             + ("; --quick" if record["quick"] else ""),
             f"- record: `{name}`"]
    failures = record.get("failures") or []
    if failures:
        lines.append(f"- **{len(failures)} run(s) failed**: " + escape(failures[0].splitlines()[0])
                     + (" (and more, see the record)" if len(failures) > 1 else ""))
    for tab in record["tables"]:
        lines += ["", f"### {escape(tab['title'])}", "", *markdown_table(tab)]
        lines += [""] + [f"_{escape(note)}_" for note in tab.get("notes", [])] if tab.get("notes") else []
    return lines + [""]


def render(records: list[tuple[str, dict]], results_dir: str = "benchmarks/results") -> str:
    """docs/results.md's text for ``records`` (as load_records returns them)."""
    lines = ["# Benchmark results", "",
             "<!-- generated by `python scripts/results_md.py` from the records in "
             f"{results_dir}/: edit or rerun the benchmarks, not this file -->", "",
             "Each section is one result record, written by the benchmark command it shows (`benchmarks/<name>.py`, "
             "see the README); the paper's numbers, where a benchmark has them, are in the columns named "
             "\"paper\", beside ours. Regenerate this page with `python scripts/results_md.py`; "
             "`python scripts/results_md.py --check` tells whether it matches the records.", ""]
    if not records:
        return "\n".join(lines + [f"No records yet: run a benchmark (it writes {results_dir}/<benchmark>-<config>.json), "
                                  "then this script.", ""])
    lines += ["| benchmark | configuration | date | commit |", "|---|---|---|---|"]
    for _, record in records:
        commit = (record["git"] or {}).get("commit")
        lines.append(f"| [{record['benchmark']}](#{anchor(heading(record))}) | {escape(record['config'])} | "
                     f"{record['date'][:10]} | {commit[:12] if commit else '–'} |")
    lines.append("")
    for name, record in records:
        lines += section(name, record)
    return "\n".join(lines)


def main(args: Args) -> int:
    results_dir, output = ROOT / args.results_dir, ROOT / args.output
    text = render(load_records(results_dir), args.results_dir)
    if args.check:
        current = output.read_text() if output.is_file() else ""
        if current == text:
            print(f"{args.output} is up to date with {args.results_dir}/")
            return 0
        diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(), args.output, "generated",
                                         lineterm="", n=1))
        print(f"{args.output} differs from what {args.results_dir}/ gives: run python scripts/results_md.py\n"
              + "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else ""), file=sys.stderr)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {args.output} ({text.count(chr(10) + '## ')} record(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
