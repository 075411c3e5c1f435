"""The size gate of CI (scripts/check_sizes.py) on a small tree of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "check_sizes.py"


def _function(name: str, body_lines: int, indent: str = "") -> str:
    body = "".join(f"{indent}    x = {i}\n" for i in range(body_lines - 1))
    return f"{indent}@staticmethod\n{indent}def {name}() -> int:\n{body}{indent}    return 0\n"


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, check=False
    )


def test_an_oversized_function_is_listed_and_fails(tmp_path: Path) -> None:
    # 61 lines from def to the end of the body (the decorator is not counted), and 60 exactly.
    (tmp_path / "mod.py").write_text(
        "class Box:\n" + _function("too_long", 60, "    ") + _function("fine", 59, "    ")
    )
    result = _check(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / 'mod.py'}:3: Box.too_long has 61 lines (limit 60)" in result.stdout
    assert "fine" not in result.stdout


def test_an_oversized_module_is_listed_and_fails(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "big.py").write_text("x = 1\n" * 401)
    (tmp_path / "pkg" / "small.py").write_text("x = 1\n" * 400)
    result = _check(tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"{tmp_path / 'pkg' / 'big.py'}: module of 401 lines (limit 400)"
    )
    assert "small.py" not in result.stdout


def test_a_tree_within_the_limits_passes(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(_function("fine", 59))
    result = _check(tmp_path)
    assert result.returncode == 0, result.stdout
