"""The wheel carries what the gateway reads at run time besides its code: the pages, the
playground and OpenAI's schemas (pyproject.toml's package data)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_FOLDERS = ["gateway/api/docs/openai", "gateway/api/docs/pages", "gateway/api/playground/static"]


def test_the_wheel_ships_every_page_asset_and_schema(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "gateway", source / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("llm_gateway-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    needed = {
        str(path.relative_to(REPO))
        for folder in DATA_FOLDERS
        for path in (REPO / folder).iterdir()
        if path.is_file() and path.suffix != ".md"
    }
    # chat-, embeddings- and responses-schemas.json, docs.html, redoc.html, swagger-init.js, index.html, app.js, style.css
    assert len(needed) == 9
    assert needed - shipped == set()
