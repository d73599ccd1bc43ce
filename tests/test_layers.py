"""The package's structure: the layers data flows through, no import running up them, no cycles.

Every `import`/`from ... import` of a cnirun module, at module level or inside
a function (lazy imports count: they are dependencies all the same), is read
with ast and checked against LAYERS, lowest first:

    core  ->  config  ->  CNI runtime  ->  attachment lifecycle  ->  engines / run state
          ->  hook, installers, teardown, watcher, network store  ->  runner
          ->  compose, overlay, plugins  ->  CLI

A module may import its own layer and the layers below; never above. The
graph of all those imports must have no cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "cnirun"

# (layer name, module prefixes); a module belongs to the first layer with a matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("cnirun.value", "cnirun.jsonfast", "cnirun.fsutil", "cnirun.errors", "cnirun.paths",
              "cnirun.version", "cnirun.trace", "cnirun.process")),
    ("config", ("cnirun.config", "cnirun.result", "cnirun.lock", "cnirun.start_gate", "cnirun.chains", "cnirun.invoke", "cnirun.netns",
                "cnirun.oci_state", "cnirun.leftovers", "cnirun.hostfiles", "cnirun.options",
                "cnirun.policy")),
    ("runtime", ("cnirun.cache", "cnirun.runtime", "cnirun.defaults", "cnirun.skel", "cnirun.portlock",
                 "cnirun.dns")),
    ("lifecycle", ("cnirun.lifecycle", "cnirun.hosts_patch")),
    # live_record: run state (what the live commands remember beside the run dirs), below cnirun.live
    ("engines", ("cnirun.engines", "cnirun.state", "cnirun.request", "cnirun.live_record")),
    ("adapters-low", ("cnirun.hook", "cnirun.shim", "cnirun.hooksd", "cnirun.docker_runtime",
                      "cnirun.teardown", "cnirun.watch", "cnirun.netstore", "cnirun.live",
                      "cnirun.reload")),
    ("runner", ("cnirun.runner",)),
    # plugins: programs on cnirun.skel that plugin runners exec (flannel reads the overlay's lease)
    ("adapters", ("cnirun.compose", "cnirun.overlay", "cnirun.plugins")),
    ("cli", ("cnirun.cli",)),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts)


def _layer(module: str) -> int:
    if module == "cnirun":  # the package's lazy re-exports (CNI, RuntimeConf, ...): the public face, on top
        return len(LAYERS) - 1
    best = -1
    best_len = -1
    for i, (_name, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".") or module.startswith(p + "_")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def _imports(path: Path, module: str) -> set[str]:
    """cnirun modules imported by `module` (absolute names), anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("cnirun"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("cnirun"):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if (PKG.parent / Path(*sub.split("."))).with_suffix(".py").exists()
                        or (PKG.parent / Path(*sub.split(".")) / "__init__.py").exists() else target)
    return {m.removesuffix(".__init__") for m in out if m != module}


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        module = _module_name(path).removesuffix(".__init__")
        graph[module] = _imports(path, module)
    return graph


def test_every_module_has_a_layer() -> None:
    missing = [m for m in _graph() if _layer(m) < 0]
    assert missing == [], f"add these modules to LAYERS in {__file__}: {missing}"


def test_no_import_runs_up_the_layers() -> None:
    graph = _graph()
    up = []
    for module, deps in graph.items():
        for dep in deps:
            if dep in graph and _layer(dep) > _layer(module):
                up.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})")
    assert up == [], "imports running up the layers:\n" + "\n".join(sorted(up))


def test_no_import_cycles() -> None:
    graph = _graph()
    # Package __init__ modules re-export lazily (cnirun/__init__.py): the edges a
    # package's own submodules make to it are the package, not a cycle of code.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d not in graph:
                continue
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_and_relative_imports() -> None:
    """The walker itself: a function-level relative import is an edge (a test that could pass blind is none)."""
    graph = _graph()
    assert "cnirun.lifecycle" in graph["cnirun.hook"]  # imported inside attach_container
    assert "cnirun.runtime" in graph["cnirun.lifecycle"]  # module level
    assert "cnirun.netstore.networks" in graph["cnirun.runner.plan"]  # lazy, two dots
