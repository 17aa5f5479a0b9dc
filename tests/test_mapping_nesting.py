"""A mapping nested absurdly deep is a mapping error (422 through the API, exit 2 from
`sluis map`), never a RecursionError."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.minimise.mapping import MAX_NESTING, MappingError, parse_mapping
from tests.test_map_cli import sluis

_HEAD = 'connector = "afas"\n[identity]\nfields = ["Medewerker"]\nnamespace = "afas.employee"\n'


def _deep(kind: str, depth: int) -> str:
    if kind == "array":
        return _HEAD + "x = " + "[" * depth + "]" * depth + "\n"
    if kind == "inline":
        return _HEAD + "x = " + "{a = " * depth + "1" + "}" * depth + "\n"
    return _HEAD + "[fields.email]\nsource = " + "[" * depth + '"a"' + "]" * depth + "\n"


@pytest.mark.parametrize("kind", ["array", "inline", "field"])
@pytest.mark.parametrize("depth", [MAX_NESTING + 2, 900, 20_000])
def test_deep_nesting_is_a_mapping_error(kind: str, depth: int) -> None:
    with pytest.raises(MappingError, match="nested more than"):
        parse_mapping(_deep(kind, depth), "deep.toml")


def test_sluis_map_exits_2_with_one_line(tmp_path: Path) -> None:
    mapping = tmp_path / "deep.toml"
    mapping.write_text(_deep("inline", 5000))
    run = sluis("map", "--mapping", str(mapping), "--input", "-", stdin=b"")
    assert run.returncode == 2
    err = run.stderr.decode()
    assert str(mapping) in err and "nested more than" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
