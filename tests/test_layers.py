"""Imports flow one way (face, data -> models -> training -> export -> runtime -> gate): checked on the source.

Each sub-package's ``commands.py`` is the CLI layer (registered by ``cli.py``, above every
package) and may wire any of them together; the rest of a package keeps to its layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "coreface_edge"

# sub-package -> the sub-packages it must never import (the layers above it)
FORBIDDEN = {
    "data": {"models", "training", "export", "runtime", "calibration", "gate", "liveness", "fleet", "profiling", "demo"},
    "models": {"training", "export", "runtime", "calibration", "gate", "liveness", "fleet", "profiling", "demo"},
    "training": {"export", "runtime", "calibration", "gate", "liveness", "fleet", "profiling", "demo"},
    "export": {"runtime", "calibration", "gate", "liveness", "fleet", "profiling", "demo"},
    "runtime": {"calibration", "gate", "liveness", "fleet", "profiling", "demo"},
    "face": {"models", "training", "export", "runtime", "calibration", "gate", "liveness", "fleet", "profiling", "demo"},
    "evaluation": {"calibration", "gate", "liveness", "fleet", "profiling", "demo"},
    "liveness": {"gate", "fleet", "profiling", "demo"},
    "gate": {"demo"},
}


def _imported_subpackages(path: Path) -> set[str]:
    """The coreface_edge sub-packages a module imports (relative or absolute), at any depth."""
    found = set()
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 1 for coreface_edge/<sub>/<module>.py
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("coreface_edge."):
                found.add(node.module.split(".")[1])
            elif node.level > depth and node.module:  # "from ..x import" inside a sub-package
                found.add(node.module.split(".")[0])
            elif node.level > depth:  # "from .. import x"
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("coreface_edge."))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_never_imports_the_layers_above_it(layer: str) -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_imported_subpackages(path) & FORBIDDEN[layer])
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        if path.name != "commands.py"
    }
    assert not {k: v for k, v in offenders.items() if v}, offenders


SHARED = ("atomic", "contract", "errors", "images", "ort_session", "threshold_file")  # below every package
SUBPACKAGES = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}


@pytest.mark.parametrize("module", SHARED)
def test_the_shared_helpers_import_no_package(module: str) -> None:
    assert not _imported_subpackages(PACKAGE / f"{module}.py") & SUBPACKAGES


def test_the_checker_sees_every_kind_of_import() -> None:
    """Module-level and function-level relative imports, and a sibling in the same package (not a layer)."""
    found = _imported_subpackages(PACKAGE / "export" / "onnx_export.py")
    assert {"errors", "threshold_file"} <= found  # "from ..errors import", "from ..threshold_file import" inside a function
    assert "onnx_meta" not in found  # "from .onnx_meta import": same package
    assert "face" in _imported_subpackages(PACKAGE / "gate" / "loop.py")
