"""bench/RESULTS.md: each benchmark writes its own section there, between two markers of its own."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).parent / "RESULTS.md"


def write_section(mark: str, title: str, lines: list[str]) -> None:
    """Replace the section between two `mark` lines of bench/RESULTS.md (or add it at the end) with `title`
    and `lines`."""
    before, _, rest = RESULTS.read_text().partition(mark)
    after = rest.partition(mark)[2]
    section = [mark, title, "", *lines, mark]
    RESULTS.write_text(before.rstrip() + "\n\n" + "\n".join(section) + (after or "\n"))
