"""The layering rules of docs/ARCHITECTURE.md, checked on the import statements (plain `ast`).

Dependencies point one way. Each unit below has a rank; a module may import from units of
its own rank or lower, never higher, and no two units may import each other (directly or
round a loop). On top of the order, a few rules say what a room must never touch:

* `connectors/` imports nothing from `gateway/` (connectors are leaves the core calls);
* `gateway/ledger/` imports neither `api/` nor the mapping and projector code: from
  `minimise/` it may use the egress vocabulary (`gateway.minimise.egress`) only;
* `gateway/delivery/` does not import the HTTP layer (`gateway.api`, `aiohttp.web`);
* `gateway/store/` never interprets what it stores: nothing from `ledger/` or `minimise/`;
* `gateway/console/` imports nothing from `gateway/api/` (which mounts it).

Type-only imports and imports inside functions count too. A module of `gateway/` that no
unit covers fails the check until it is given a place in `RANKS`.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

OURS = ("gateway", "connectors", "mappings")

#: Unit (a package or module path) -> rank; the longest matching prefix decides.
RANKS: dict[str, int] = {
    # surfaces and the composition root
    "gateway.cli": 6,
    "gateway.api": 6,
    "gateway.console": 6,
    "gateway.runtime.services": 6,
    # the flow's steps that move data
    "gateway.sync": 5,
    "gateway.delivery": 5,
    "gateway.offline": 5,
    # answers to a controller's questions (breach scope), read from the ledger
    "gateway.lifecycle": 5,
    # who may act: accounts, roles, sessions, tokens (records its actions in the ledger)
    "gateway.accounts": 5,
    # tenants, connector records and consumer tokens, shared by sync and delivery
    "gateway.tenancy": 4,
    # what data may leave and how transfers are recorded
    "gateway.minimise": 3,
    "gateway.ledger": 3,
    # operational support with no domain knowledge; connectors are leaves called from above
    "gateway.runtime": 2,
    "connectors": 2,
    # the bottom: storage, key material, bundled mapping files, the version string
    "gateway.store": 1,
    "gateway.keys": 1,
    "mappings": 1,
    "gateway": 1,
}

#: (importing unit, forbidden prefixes, allowed exceptions, why).
RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str], ...] = (
    ("connectors", ("gateway",), (), "connectors/ are leaves: nothing from gateway/"),
    (
        "gateway.ledger",
        ("gateway.api", "gateway.minimise"),
        ("gateway.minimise.egress",),
        "ledger/ names fields with the egress vocabulary only; no API, mapping or projector",
    ),
    (
        "gateway.delivery",
        ("gateway.api", "aiohttp.web"),
        (),
        "delivery/ is domain logic; the HTTP layer is api/",
    ),
    (
        "gateway.store",
        ("gateway.ledger", "gateway.minimise"),
        (),
        "store/ keeps bytes and rows; it never interprets entries or subjects",
    ),
    (
        "gateway.console",
        ("gateway.api",),
        (),
        "console/ is mounted by api/; it shares the domain functions, not the API's handlers",
    ),
)


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    importer: str
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}: {self.why}"


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def unit_of(module: str) -> str | None:
    """The longest `RANKS` key that is `module` or a package holding it (the root module
    `gateway` only matches itself)."""
    best = None
    for unit in RANKS:
        if unit == "gateway" and module != "gateway":
            continue
        if _matches(module, unit) and (best is None or len(unit) > len(best)):
            best = unit
    return best


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(module: str, source: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, name) of every import in `source`; `from a import b` yields `a` and `a.b`, so
    that importing a submodule by name counts as importing it."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                drop = node.level - 1 if is_package else node.level
                package = package[: len(package) - drop] if drop else package
                base = ".".join([*package, base] if base else package)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def check(root: Path) -> list[Violation]:
    """Every broken rule in the tree under `root` (which holds gateway/, connectors/, ...)."""
    found: list[Violation] = []
    edges: dict[str, dict[str, tuple[str, int, str]]] = {}
    for top in OURS:
        for path in sorted((root / top).rglob("*.py")):
            module = module_name(root, path)
            rel = path.relative_to(root).as_posix()
            unit = unit_of(module)
            if unit is None:
                found.append(Violation(rel, 1, module, "-", "no place in RANKS; add one"))
                continue
            source = path.read_text(encoding="utf-8")
            for line, name in imports(module, source, path.name == "__init__.py"):
                for owner, forbidden, allowed, why in RULES:
                    if (
                        _matches(module, owner)
                        and any(_matches(name, f) for f in forbidden)
                        and not any(_matches(name, a) for a in allowed)
                    ):
                        found.append(Violation(rel, line, module, name, why))
                if name.split(".")[0] not in OURS:
                    continue
                target = unit_of(name)
                if target is None or target == unit:
                    continue
                if RANKS[target] > RANKS[unit]:
                    why = f"{unit} (rank {RANKS[unit]}) may not import {target} (rank "
                    found.append(Violation(rel, line, module, name, why + f"{RANKS[target]})"))
                edges.setdefault(unit, {}).setdefault(target, (rel, line, name))
    found.extend(_cycles(edges))
    return sorted(set(found), key=lambda v: (v.path, v.line, v.imported))


def _cycles(edges: dict[str, dict[str, tuple[str, int, str]]]) -> list[Violation]:
    """One violation per import that closes a loop between units."""
    found = []
    for start, targets in edges.items():
        for target, (rel, line, name) in targets.items():
            # Is there a way back from target to start?
            seen, todo = {target}, [target]
            while todo:
                here = todo.pop()
                for nxt in edges.get(here, {}):
                    if nxt == start:
                        why = f"{start} and {target} import each other (an import loop)"
                        found.append(Violation(rel, line, start, name, why))
                        todo = []
                        break
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
    return found


# --------------------------------------------------------------------------- the tests


def test_the_code_keeps_the_layering_rules() -> None:
    broken = check(REPO)
    assert not broken, "layering rules broken:\n" + "\n".join(map(str, broken))


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_checker_catches_planted_bad_imports(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "gateway/__init__.py": "",
            "gateway/ledger/log.py": "from gateway.minimise.egress import EGRESS_FIELDS\n",
            "gateway/ledger/bad.py": "from gateway.minimise.projector import Projector\n",
            "gateway/store/bad.py": "def f():\n    from ..ledger import entry\n",
            "gateway/delivery/bad.py": "from aiohttp import web\n",
            "gateway/sync/bad.py": "import gateway.api.app\nfrom gateway.delivery import x\n",
            "gateway/delivery/feed.py": "from gateway.sync.instructions import grant\n",
            "gateway/minimise/egress.py": (
                "import importlib\nimportlib.import_module('gateway.cli.main')\n"
            ),
            "gateway/unranked/users.py": "",
            "connectors/base.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from gateway.store import Store\n"
            ),
            "mappings/__init__.py": "",
        },
    )  # fmt: skip
    broken = {(v.path, v.imported) for v in check(tmp_path)}
    assert broken == {
        ("gateway/ledger/bad.py", "gateway.minimise.projector"),
        ("gateway/ledger/bad.py", "gateway.minimise.projector.Projector"),
        ("gateway/store/bad.py", "gateway.ledger"),
        ("gateway/store/bad.py", "gateway.ledger.entry"),
        ("gateway/delivery/bad.py", "aiohttp.web"),
        ("gateway/sync/bad.py", "gateway.api.app"),
        ("gateway/sync/bad.py", "gateway.delivery"),  # sync <-> delivery loop
        ("gateway/delivery/feed.py", "gateway.sync.instructions"),  # the other half
        ("gateway/minimise/egress.py", "gateway.cli.main"),
        ("gateway/unranked/users.py", "-"),
        ("connectors/base.py", "gateway.store"),
        ("connectors/base.py", "gateway.store.Store"),
    }


def _unit_from_path(text: str) -> str:
    path = text.removesuffix("/").removesuffix(".py").removesuffix("/__init__")
    return path.replace("/", ".")


def test_the_architecture_page_states_these_rules_and_names_real_files() -> None:
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    stated: dict[str, int] = {}
    table = doc.split("| rank | units |", 1)[1].split("\n\n", 1)[0]
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[1].isdigit():
            for name in re.findall(r"`([^`]+)`", cells[2]):
                stated[_unit_from_path(name)] = int(cells[1])
    assert stated == RANKS
    for name in set(re.findall(r"`((?:gateway|connectors|tests|mappings)/[\w/.]+)`", doc)):
        assert (REPO / name).exists(), f"docs/ARCHITECTURE.md names {name}, which is gone"
