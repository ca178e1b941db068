"""Everything the deployed code imports is in the dependencies layer (or the standard library): a module
that only the development venv has would pass every test here and fail in Lambda."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = [ROOT / "layers" / "shared", ROOT / "functions", ROOT / "infra" / "custom_resources"]
FIRST_PARTY = {
    "espmail",
    "expander",
    "sender",
    "mailgate",
    "sendgrid_domain_auth",
    "active_receipt_rule_set",
    "cfn_response",
}


def _runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    type_checking_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                type_checking_lines.add(getattr(child, "lineno", -1))
    for node in ast.walk(tree):
        if getattr(node, "lineno", -1) in type_checking_lines:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _layer_distributions() -> set[str]:
    lines = (ROOT / "layers" / "dependencies" / "requirements.txt").read_text().splitlines()
    return {line.split("==")[0].strip().lower().replace("_", "-") for line in lines if "==" in line}


def test_every_third_party_import_of_deployed_code_is_pinned_in_the_layer() -> None:
    distributions = packages_distributions()
    pinned = _layer_distributions()
    missing: dict[str, str] = {}
    for folder in DEPLOYED:
        for path in folder.rglob("*.py"):
            for module in _runtime_imports(path):
                if module in sys.stdlib_module_names or module in FIRST_PARTY or module == "__future__":
                    continue
                owners = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
                if not owners & pinned:
                    missing.setdefault(module, str(path.relative_to(ROOT)))
    assert missing == {}
