"""The layout's promises, checked from the code itself:

- no import cycle between the project's modules, counting imports inside functions;
- the Rasa server's code and the action server's code import nothing of each other;
  ``content`` imports neither (nor Rasa, nor rasa_sdk);
- languages are listed only in the registry (data/languages.yml): no literal list
  or mapping of language codes anywhere in the code or the web page;
- every environment variable is read through content/settings.py.
"""

from __future__ import annotations

import ast
import pathlib
import re
from typing import Dict, List, Set

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("actions", "channels", "components", "content", "handoff", "jobs", "plugins")
RASA_SIDE = ("channels", "components", "handoff", "jobs", "plugins")
ACTION_SIDE = ("actions",)


def modules() -> Dict[str, pathlib.Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: pathlib.Path, name: str, known: Set[str]) -> Set[str]:
    """Project modules imported anywhere in the file (top level and inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def graph() -> Dict[str, Set[str]]:
    found = modules()
    return {name: imports_of(path, name, set(found)) for name, path in found.items()}


def test_no_import_cycles():
    edges = graph()

    # A package's __init__ importing its own modules (to register them) is not a cycle of design.
    def outgoing(name: str) -> Set[str]:
        return (
            {t for t in edges[name] if not (name in t.split(".")[0] and t.startswith(name + "."))}
            if "." not in name
            else edges[name]
        )

    cycles: List[List[str]] = []
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in outgoing(node):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_two_servers_import_nothing_of_each_other():
    edges = graph()
    crossing = [
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if (a.split(".")[0] in RASA_SIDE and b.split(".")[0] in ACTION_SIDE)
        or (a.split(".")[0] in ACTION_SIDE and b.split(".")[0] in RASA_SIDE)
    ]
    assert not crossing, crossing


def test_content_is_neutral():
    for path in (ROOT / "content").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for forbidden in (
            "import rasa",
            "from rasa",
            "import rasa_sdk",
            "from rasa_sdk",
            "from actions",
            "from channels",
            "from components",
            "from handoff",
            "from plugins",
            "from jobs",
        ):
            assert forbidden not in text, f"{path.relative_to(ROOT)}: {forbidden}"


def registry_codes() -> List[str]:
    return [entry["code"] for entry in yaml.safe_load((ROOT / "data" / "languages.yml").read_text())["languages"]]


def test_no_literal_lists_of_language_codes():
    """Three or more registry codes quoted together in one expression, dict or
    array anywhere outside the registry is a second list that would drift."""
    codes = set(registry_codes())
    quoted = re.compile(r"""['"]([a-z]{2})['"]""")
    offenders = []
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    files += list((ROOT / "channels").rglob("*.js")) + list((ROOT / "channels").rglob("*.html"))
    files += [p for p in (ROOT / "scripts").glob("*.py")] + [p for p in (ROOT / "bench").glob("*.py")]
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found = {c for c in quoted.findall(line) if c in codes}
            if len(found) >= 3:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {sorted(found)}")
    assert not offenders, "literal lists of language codes:\n" + "\n".join(offenders)


def test_environment_read_only_through_settings():
    pattern = re.compile(r"os\.environ(?:\.get)?\s*[\[(]\s*['\"](?:WAYPOINT|TELEGRAM|MESSENGER|WHATSAPP|META)_")
    offenders = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "settings.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, offenders


def test_every_nlu_block_says_its_language():
    from content.nlu_files import blocks_without_language

    missing = {
        str(p.relative_to(ROOT)): blocks_without_language(p) for p in sorted((ROOT / "data" / "nlu").glob("*/*.yml"))
    }
    assert not {k: v for k, v in missing.items() if v}


def test_nlu_folders_are_registry_languages():
    codes = set(registry_codes())
    for folder in (ROOT / "data" / "nlu").iterdir():
        assert folder.name in codes, f"data/nlu/{folder.name} is not a registry language"
        for path in folder.glob("*.yml"):
            from content.nlu_files import nlu_examples

            languages = {lang for _, _, lang in nlu_examples(path)}
            assert languages <= {folder.name}, f"{path.relative_to(ROOT)}: blocks in {sorted(languages)}"
