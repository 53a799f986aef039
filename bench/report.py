"""Write a benchmark's results into docs/benchmarks.md, replacing only its own marked section."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nEvery number here was produced by the command shown with it, on the machine named "
          "with it. Scripts live in `bench/` and are run by hand; each replaces only its own section.\n")


def write_section(key: str, title: str, body: str, doc: Path = DOC) -> Path:
    """Insert or replace the section between `<!-- key:start -->` and `<!-- key:end -->`."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    stamp = f"_{datetime.date.today().isoformat()}, {platform.processor() or platform.machine()}, " \
            f"Python {platform.python_version()}_"
    section = f"{start}\n## {title}\n\n{stamp}\n\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return doc
