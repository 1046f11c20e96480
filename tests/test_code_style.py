"""The code base stays `ruff check` and `ruff format` clean: CI runs this with the tests."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = str(Path(sys.executable).parent / "ruff")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command: list[str]) -> None:
    done = subprocess.run([RUFF, *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_module_imports_from_a_test_module() -> None:
    """Shared test helpers live in helper modules (``tests/pipelines/cli_runs.py``), never in a
    ``test_*.py`` that another file imports: pytest would collect its tests twice over."""
    imports = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in ROOT.glob("**/*.py")
        if ".venv" not in path.parts
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(("from tests.", "import tests."))
        and any(part.startswith("test_") for part in line.split()[1].split("."))
    ]
    assert imports == []
