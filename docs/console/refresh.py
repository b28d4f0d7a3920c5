"""Refresh the README's console screenshots from the ones the browser tests wrote.

    .venv/bin/python -m pytest tests/browser -q      # writes build/screenshots/*.png
    .venv/bin/python docs/console/refresh.py         # picks, scales and writes docs/console/*.png

The pictures are the tests' own (nothing is staged by hand); they are scaled to 960 px wide and
reduced to 256 colours so the repository stays small.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SHOTS = HERE.parents[1] / "build" / "screenshots"
WIDTH = 960
# README name <- the test's screenshot
PICKS = {
    "sign-in": "01-sign-in",
    "dashboard": "16-dashboard-after",
    "dashboard-one-operation": "17-dashboard-one-operation",
    "channels": "03-channels",
    "key-created": "04-key-created",
    "request-detail": "15-request-detail",
    "playground-inpaint": "08-playground-inpaint-result",
    "playground-async": "13-playground-async-completed",
    "prices": "operator-prices",
    "phone-playground": "phone-playground",
}


def main() -> int:
    missing = [shot for shot in PICKS.values() if not (SHOTS / f"{shot}.png").exists()]
    if missing:
        print(f"run the browser tests first; missing in {SHOTS}: {', '.join(missing)}", file=sys.stderr)
        return 1
    for name, shot in PICKS.items():
        img = Image.open(SHOTS / f"{shot}.png").convert("RGB")
        if img.width > WIDTH:
            img = img.resize((WIDTH, round(img.height * WIDTH / img.width)), Image.Resampling.LANCZOS)
        img.quantize(256, method=Image.Quantize.MEDIANCUT).save(HERE / f"{name}.png", optimize=True)
        print(f"docs/console/{name}.png <- {shot}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
