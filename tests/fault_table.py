"""Renders the fault-injection report that tests/test_faults.py writes (with
$BENCHMARK_FAULT_REPORT set) as a Markdown table, printed or written into a document between
its `<!-- fault-table -->` and `<!-- /fault-table -->` lines:

    BENCHMARK_FAULT_REPORT=faults.json python -m pytest tests/test_faults.py [-m slow]
    python tests/fault_table.py faults.json --write docs/robustness.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

BEGIN, END = "<!-- fault-table -->", "<!-- /fault-table -->"


def table(entries: list[dict]) -> str:
    lines = ["| fault | injected | trials | survived | checked after it | notes |",
             "|---|---|---:|---:|---|---|"]
    for e in sorted(entries, key=lambda e: (e["fault"], e["trials"])):
        lines.append(f"| {e['fault']} | {e['injected']} | {e['trials']} | {e['survived']} | "
                     f"{e['checked']} | {e['notes']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", help="the JSON report the tests wrote")
    p.add_argument("--write", metavar="DOC", help="replace the table in this Markdown file")
    args = p.parse_args()
    text = table(json.loads(Path(args.report).read_text()))
    if not args.write:
        print(text)
        return
    doc = Path(args.write)
    old = doc.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(old):
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} section")
    doc.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", old))


if __name__ == "__main__":
    main()
