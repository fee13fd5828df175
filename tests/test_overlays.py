"""The error-overlay codes: one enum (jobd.core.models.OverlayCode), all of it in docs/api.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from jobd.core.models import OverlayCode

ROOT = Path(__file__).resolve().parent.parent


def documented_codes() -> set[str]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    table = text.split("| `code` | set when |", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)` \|", table, re.MULTILINE))


def test_every_code_is_documented_and_every_documented_code_exists() -> None:
    assert documented_codes() == {str(code) for code in OverlayCode}


def test_no_overlay_is_made_with_a_bare_string_code() -> None:
    bare = []
    for path in sorted((ROOT / "jobd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "ErrorOverlay"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bare, f"ErrorOverlay made with a string code, not OverlayCode: {bare}"
