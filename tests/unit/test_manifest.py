"""The route manifest is the only place routing is decided: check it is self-consistent."""

from __future__ import annotations

import re

import pytest

from pasture.api.app import create_app
from pasture.api.groups import GROUPS, group


def _matches(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


@pytest.mark.parametrize("g", GROUPS, ids=[g.name for g in GROUPS])
def test_every_route_of_a_group_is_under_its_prefixes(g) -> None:  # type: ignore[no-untyped-def]
    paths = create_app([g]).openapi()["paths"]
    assert paths, f"group {g.name} has no routes"
    for path in paths:
        assert any(_matches(path, p) for p in g.prefixes), (
            f"{path} is outside {g.name}'s prefixes {g.prefixes}"
        )


def test_groups_have_unique_names_and_routes() -> None:
    assert len({g.name for g in GROUPS}) == len(GROUPS)
    seen: dict[tuple[str, str], str] = {}
    for g in GROUPS:
        for path, ops in create_app([g]).openapi()["paths"].items():
            for method in ops:
                key = (method, re.sub(r"{\w+}", "{}", path))
                assert key not in seen, f"{key} in both {seen.get(key)} and {g.name}"
                seen[key] = g.name


def test_group_lookup() -> None:
    assert group("retrieval").name == "retrieval"
    with pytest.raises(KeyError):
        group("nope")
