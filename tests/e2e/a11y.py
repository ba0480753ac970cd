"""Accessibility checks for the browser tests: axe-core (npm, installed by scripts/setup.sh under var/npm)
injected into a Playwright page, plus the checks axe does not make (tap-target size, sideways scrolling).

axe-core is evaluated as a script through the DevTools protocol, so the console's Content-Security-Policy
(no inline script, no eval) stays as it is for the page under test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "var" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0/2.1/2.2 levels A and AA
WCAG_AA_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
# checked on the smart screen too: AAA contrast (7:1)
AAA_RULES = ["color-contrast-enhanced"]


def screenshots_dir(reports_dir: Path) -> Path:
    """Where the browser tests save their screenshots: the run's reports folder, so that ``make test`` leaves
    the tree clean (the pages show today's dates); docs/screenshots/ only when asked to refresh the README's
    pictures with ``ASSISTANT_UPDATE_SCREENSHOTS=1``."""
    out = ROOT / "docs" / "screenshots" if os.environ.get("ASSISTANT_UPDATE_SCREENSHOTS") == "1" else reports_dir / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


def need_axe() -> None:
    if not AXE_JS.exists():
        pytest.skip(f"axe-core missing at {AXE_JS.relative_to(ROOT)} (npm package axe-core; scripts/setup.sh installs it)")


async def axe_violations(page, *, aaa_contrast: bool = False) -> list[dict]:
    """axe-core's violations on the page as it is now: WCAG 2.2 A/AA, plus AAA contrast when asked."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    runs = [{"runOnly": {"type": "tag", "values": WCAG_AA_TAGS}}]
    if aaa_contrast:
        runs.append({"runOnly": {"type": "rule", "values": AAA_RULES}})
    found: list[dict] = []
    for options in runs:
        result = await page.evaluate("(opts) => axe.run(document, opts)", options)
        found += [
            {"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"][:5]]}
            for v in result["violations"]
        ]
    return found


SMALL_TARGETS_JS = """
(minPx) => {
  const small = [];
  let checked = 0;
  for (const el of document.querySelectorAll('button, a[href], input:not([type=hidden]), select, textarea, [role=button]')) {
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right < 0 || r.bottom < 0) continue;  // hidden, or the off-screen skip link
    checked += 1;
    if (r.width < minPx - 0.5 || r.height < minPx - 0.5)
      small.push({el: el.id || el.tagName + ':' + el.textContent.trim().slice(0, 12), w: Math.round(r.width), h: Math.round(r.height)});
  }
  return {checked, small};
}
"""


async def small_targets(page, *, min_px: float) -> dict:
    """Visible controls smaller than ``min_px`` × ``min_px`` CSS px: ``{"checked": n, "small": [...]}``."""
    return await page.evaluate(SMALL_TARGETS_JS, min_px)


async def sideways_overflow_px(page) -> int:
    """How far the page is wider than the viewport (0: no horizontal scrolling)."""
    return await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
