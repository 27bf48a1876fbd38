"""pytest plugin for `make mutation`: a mutant is tested only by its module's own test files.

mutmut runs, for each mutant, every test that executed the mutated function; for functions
every message passes through (spec.py, identity.py) that is most of the suite, too slow for
thousands of mutants. The Makefile loads this plugin (PYTEST_PLUGINS=tests.support.mutation_scope);
while mutmut tests a mutant (MUTANT_UNDER_TEST names it) the plugin deselects every test
outside the files that `[tool.mutation_scope]` in pyproject.toml lists for its module. It does
nothing in any other run (mutmut's stats and clean runs, `make test`).
"""

import fnmatch
import os
import tomllib
from typing import Any


def _scope(rootpath: Any, mutant: str) -> list[str] | None:
    table = tomllib.loads((rootpath / "pyproject.toml").read_text())["tool"]["mutation_scope"]
    modules = [module for module in table if mutant.startswith(module + ".")]
    return table[max(modules, key=len)] if modules else None


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if not mutant.startswith("connector."):
        return
    patterns = _scope(config.rootpath, mutant)
    if patterns is None:
        return
    keep: list[Any] = []
    drop: list[Any] = []
    for item in items:
        path = item.path.relative_to(config.rootpath).as_posix()
        (keep if any(fnmatch.fnmatch(path, pattern) for pattern in patterns) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
