"""The store contract suite covers every method of both protocols.

A method added to `Store` or `LedgerStore` without a contract test would let a second
backend get it wrong unnoticed; this test names any such method.
"""

from __future__ import annotations

import ast
from pathlib import Path

from gateway.store.protocols import AccountStore, LedgerReader, LedgerStore, Store

HERE = Path(__file__).resolve().parent


def _protocol_methods() -> set[str]:
    return {
        name
        for proto in (Store, LedgerStore, LedgerReader, AccountStore)
        for name in vars(proto)
        if not name.startswith("_")
    }


def _attributes_used_by_the_suite() -> set[str]:
    used: set[str] = set()
    for path in HERE.glob("*.py"):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                used.add(node.attr)
    return used


def test_every_protocol_method_has_a_contract_test() -> None:
    methods = _protocol_methods()
    assert {"transaction", "ledger", "append", "snapshot", "feed_rows"} <= methods
    missing = sorted(methods - _attributes_used_by_the_suite())
    assert not missing, f"store protocol methods no contract test calls: {missing}"
