"""axe-core in the page: the WCAG 2.1 A and AA rules (and best practices) run in real Chromium, as the RGAA
audits use them. The engine ships in tests/data/axe/ (tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = (Path(__file__).resolve().parents[1] / "data" / "axe" / "axe.min.js").read_text(encoding="utf-8")

#: The rule sets checked: WCAG 2.0 and 2.1, levels A and AA, and axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


async def violations(page: Any) -> list[str]:
    """Every axe-core violation on the page as it is now, one line each (rule, impact, the elements)."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated, not added as a <script>: the pages' Content-Security-Policy allows this site's scripts only.
        await page.evaluate(AXE + "\n;undefined")
    found = await page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations"
        ".map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)",
        TAGS,
    )
    return [str(v) for v in found]
