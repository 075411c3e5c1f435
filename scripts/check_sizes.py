"""List the modules and functions that are too long, and fail if there is one.

    python scripts/check_sizes.py [ROOT]            (ROOT: grass/ by default)

A module is too long past 400 lines; a function or method past 60, counted from its ``def``
line to the last line of its body (decorators excluded). Tests are not checked: ROOT is the
package. Exits 1 when anything is listed, 0 when nothing is. Stdlib only (ast), so CI runs it
before anything is installed if it wants.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_lines(source: str) -> int:
    """Lines of a module as ``wc -l`` counts them."""
    return source.count("\n") + (0 if source.endswith("\n") or not source else 1)


def function_sizes(source: str) -> Iterator[tuple[str, int, int]]:
    """(qualified name, line of its def, lines from the def to its body's end) of each function."""
    tree = ast.parse(source)

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                yield name, child.lineno, end - child.lineno + 1
                yield from visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


def oversized(root: Path) -> list[str]:
    """One line per module over MAX_MODULE_LINES and per function over MAX_FUNCTION_LINES."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = module_lines(source)
        if lines > MAX_MODULE_LINES:
            found.append(f"{path}: module of {lines} lines (limit {MAX_MODULE_LINES})")
        for name, line, length in function_sizes(source):
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{path}:{line}: {name} has {length} lines (limit {MAX_FUNCTION_LINES})"
                )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="grass", type=Path)
    args = parser.parse_args(argv)
    found = oversized(args.root)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} too long: split along a real seam (docs/architecture.md)")
        return 1
    print(
        f"{args.root}: no module over {MAX_MODULE_LINES} lines, no function over "
        f"{MAX_FUNCTION_LINES}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
