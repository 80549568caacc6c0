"""Regenerate the README's tutorial pictures from docs/examples/*.toml.

Run from the repository root (needs ../shared/data): ``.venv/bin/python docs/make_images.py``.
Each picture is the one-row comparison figure of the report: the endmembers on their
calibrated axis, then each abundance map with a scale bar.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from unmix import load_result
from unmix.cli import entry
from unmix.io import load
from unmix.preprocessing import pipeline_from_config
from unmix.report import plot_comparison

HERE = Path(__file__).resolve().parent
EXAMPLES = ("eels_cuzn", "eds_jeol", "raman", "stm", "xrd")


def main() -> int:
    from unmix.cli._config import load_config

    for name in EXAMPLES:
        cfg_path = HERE / "examples" / f"{name}.toml"
        out = HERE.parent / "examples_output" / name
        if entry(["run", "--config", str(cfg_path), "-q", "--force", "--no-report"]) != 0:
            return 1
        cfg = load_config(str(cfg_path))
        image = load(str((cfg_path.parent / cfg["input"]["file"]).resolve()))
        if cfg["input"].get("spatial_shape"):
            image = image.with_spatial_shape(cfg["input"]["spatial_shape"])
        steps = cfg.get("preprocess", {}).get("steps", [])
        if steps:
            image = pipeline_from_config(steps).apply(image)
        result = load_result(out / "result.h5")
        plot_comparison({name: result}, HERE / "images" / f"{name}.png", image=image)
        print(f"docs/images/{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
