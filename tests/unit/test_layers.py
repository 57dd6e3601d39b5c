"""The house rules (DESIGN.md): package layering, small modules, a small Daemon."""
from __future__ import annotations

import ast

import pytest

from tests.helpers import ROOT

PACKAGES = ("edge", "calibration", "models")
MAX_MODULE_LINES = 400
MAX_DAEMON_LINES = 200


def test_import_contracts_hold():
    """edge/ imports neither calibration/ nor models/ (but for the torch engine's network), calibration/ and
    models/ do not import each other, and only the torch engine imports torch: pyproject's import-linter
    contracts, checked with import-linter over every import, function-level ones included."""
    cli = pytest.importorskip("importlinter.cli", reason="the layering check needs import-linter (the [dev] extra)")
    assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0, \
        "an import breaks the package layering: run `lint-imports` for the chain"


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


def test_daemon_class_is_small():
    tree = ast.parse((ROOT / "edge" / "daemon.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Daemon"]
    lines = cls.end_lineno - cls.lineno + 1
    assert lines <= MAX_DAEMON_LINES, f"Daemon is {lines} lines: it wires parts, the parts do the work"
