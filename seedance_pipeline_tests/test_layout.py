"""The layout's promises: imports follow the data flow (the import contracts in pyproject.toml,
checked by `lint-imports` in CI), no module imports one that imports it back, and the asset graph
wired by key names only assets that exist."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.resources import PipelineResources, SeedanceResource

ROOT = Path(__file__).resolve().parents[1]


def import_cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), i.e. import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    # grimp reads every import statement, those inside functions included.
    graph = grimp.build_graph("seedance_pipeline", include_external_packages=False)
    cycles = import_cycles(graph, set(graph.modules))
    assert not cycles, cycles


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(name)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")
    graph.add_import(importer="a.d", imported="a.b")
    assert import_cycles(graph, set(graph.modules)) == [["a.b", "a.c"]]


def test_the_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_every_asset_dependency_names_a_defined_asset(tmp_path: Path) -> None:
    defs = build_definitions(PipelineResources(SeedanceResource(data_dir=str(tmp_path))))
    specs = defs.resolve_all_asset_specs()
    defined = {spec.key for spec in specs}
    dangling = [(spec.key, dep.asset_key) for spec in specs for dep in spec.deps
                if dep.asset_key not in defined]  # fmt: skip
    assert not dangling, dangling
    assert all(spec.deps for spec in specs if spec.key.to_user_string() != "image_catalog")


def test_every_dagster_file_is_bound_by_an_import_contract() -> None:
    """A new `sensors.py` or `schedules.py` in a stage falls under the Dagster-file rule too."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    bound = {
        m for c in config["contracts"] if c["type"] == "forbidden" for m in c["source_modules"]
    }
    package = ROOT / "seedance_pipeline"
    dagster_files = {
        f"seedance_pipeline.{path.parent.name}.{path.stem}"
        for path in package.glob("*/*.py")
        if path.stem in ("assets", "sensors", "schedules", "checks", "jobs", "resources")
        and "import dagster" in path.read_text()
    }
    assert dagster_files and dagster_files <= bound, sorted(dagster_files - bound)
