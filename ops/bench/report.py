"""What every benchmark shares: the machine it ran on, and how a result reaches a reader.

Each bench prints a Markdown table (or one JSON object with --json) and, with --record, appends
the same table under a dated heading to RESULTS.md, so that numbers in the repository always
say which command and which machine produced them.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

from streams.settings import usable_cores

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """Host, cores and CPU model: ratios are comparable within one line of this, absolute numbers are not."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0] if names else model
    return f"{platform.node()}: {usable_cores()} cores ({model}), Python {platform.python_version()}"


def emit(result: dict, table: str, *, as_json: bool, record: bool, title: str, command: str) -> None:
    """Print the result; with `record`, append it to RESULTS.md under today's date."""
    print(json.dumps(result) if as_json else f"{result['machine']}\n\n{table}")
    if record:
        with RESULTS.open("a") as f:
            f.write(f"\n## {datetime.now(UTC):%Y-%m-%d} — {title} (`{command}`)\n\n{result['machine']}.\n\n{table}\n")
