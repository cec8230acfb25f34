"""Dependencies point inward: the core never imports backend or worker; the API skips torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_neither_backend_nor_worker():
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & {"backend", "worker"})
        for path in (ROOT / "biaslab").rglob("*.py")
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert offenders == {}, f"core modules import outer packages: {offenders}"


def test_api_does_not_load_torch():
    code = (
        "import sys\n"
        "from backend.app import create_app\n"
        "import backend.cli\n"
        "create_app()\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", "building the API app imported torch"
