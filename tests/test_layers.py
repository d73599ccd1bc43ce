"""The package's structure: one package per layer, data flowing up them, no import running down-to-up, no cycles.

Every `import`/`from ... import` of a cnirun module, at module level or inside
a function (lazy imports count: they are dependencies all the same), is read
with ast and checked against LAYERS, lowest first:

    core -> cni -> engines -> state -> dns -> netstore -> network -> oci -> run
         -> live -> overlay -> plugins -> compose -> cli (and the old-path stubs)

A module may import its own package and the packages below; never above.
The graph of all those imports must have no cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "cnirun"

# (layer name, module prefixes); a module belongs to the layer with the longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("cnirun.core",)),          # os-only building blocks, hook-safe
    ("cni", ("cnirun.cni",)),            # the libcni equivalent: configs, results, plugin execution, caches
    ("engines", ("cnirun.engines",)),    # the Engine protocol and its Docker and Podman clients
    ("state", ("cnirun.state",)),        # run dirs and container records on disk
    ("dns", ("cnirun.dns",)),            # names and the networks' resolvers
    ("netstore", ("cnirun.netstore",)),  # the network configs cnirun creates and removes
    ("network", ("cnirun.network",)),    # one attachment lifecycle: options, netns, host files, rates
    ("oci", ("cnirun.oci",)),            # the OCI hook, the Docker shim and their installers
    ("run", ("cnirun.run",)),            # `cnirun run`/-d in every mode, teardown, the watcher
    ("live", ("cnirun.live",)),          # changes to running containers: connect, ports, update, reload
    ("overlay", ("cnirun.overlay",)),
    # plugins: programs on cnirun.cni.skel that plugin runners exec (flannel reads the overlay's lease)
    ("plugins", ("cnirun.plugins",)),
    ("compose", ("cnirun.compose",)),
    # the CLI; and the old module paths installs made before the packages existed still run
    ("cli", ("cnirun.cli", "cnirun.hook", "cnirun.shim", "cnirun.watch", "cnirun.process")),
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
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
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
    assert "cnirun.network.lifecycle" in graph["cnirun.oci.attach"]  # imported inside attach_container
    assert "cnirun.cni.runtime" in graph["cnirun.network.lifecycle"]  # module level
    assert "cnirun.netstore.networks" in graph["cnirun.run.plan"]  # lazy, two dots


def test_the_old_module_paths_are_stubs_only() -> None:
    """cnirun.hook/shim/watch/process stay for installs made before the move: nothing in the package imports them."""
    graph = _graph()
    stubs = {"cnirun.hook", "cnirun.shim", "cnirun.watch", "cnirun.process"}
    users = sorted(f"{m} imports {d}" for m, deps in graph.items() for d in deps & stubs)
    assert users == []
    flat = sorted(p.name for p in PKG.glob("*.py"))
    assert flat == ["__init__.py", "hook.py", "process.py", "shim.py", "watch.py"]
    for name in flat[1:]:
        assert len((PKG / name).read_text().splitlines()) < 25, f"{name} is a re-export stub, no code"
