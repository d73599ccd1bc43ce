"""Shell completion of network and container names (typer's bash/zsh completion calls these).

Cheap on purpose, they run on every <Tab>: network names come from the
netconf files (no plugin runs), container names from cnirun's run state
(no engine is asked). Anything that fails completes nothing.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def network_names(incomplete: str) -> list[str]:
    try:
        from ..cni.config import load_all
        from ..cni.runtime import CNI

        cni = CNI()
        nets, _ = load_all(cni.netconf_path)
        names = [n.name for n in nets]
        from ..cni.defaults import default_network_name

        names.append(default_network_name())
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return []
    return sorted({n for n in names if n.startswith(incomplete)})


def container_names(incomplete: str) -> list[str]:
    """Names, then IDs (12 characters), of the containers cnirun runs."""
    try:
        from ..state.runs import list_states

        out: set[str] = set()
        for st in list_states():
            meta = st.read_meta()
            if meta is None:
                continue
            for key in (meta.name, (meta.workload or "")[:12]):
                if key and key.startswith(incomplete):
                    out.add(key)
    except Exception:  # noqa: BLE001
        return []
    return sorted(out)


# -- the hand-parsed commands ------------------------------------------------------------
# `run`, `port` and `network connect/disconnect` parse their own argv (main.py),
# so click knows none of their options. Their typer stand-ins use this command
# class, which completes from the command's own usage text (the one list of
# its options, kept by whoever adds an option) and the values they take.
_NETWORK_VALUED = frozenset({"--net", "--network"})


def usage_options(usage: str) -> list[str]:
    """The long and short options a usage text names (`--net`, `-p`, ...), in order, once each."""
    import re

    seen: dict[str, None] = {}
    for m in re.finditer(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", usage.split("Examples:")[0]):
        seen.setdefault(m.group(1), None)
    return list(seen)


def usage_valued(usage: str) -> set[str]:
    """The options a usage text shows with a value (`--ip IP`, `-p [IP:]HOST:...`, `--net=NAME`)."""
    import re

    return {m.group(1) for m in re.finditer(r"(?<![\w-])(--?[a-zA-Z][\w-]*)[ =][\[A-Z]", usage.split("Examples:")[0])}


def complete_handparsed(
    options: list[str], valued: set[str], args: list[str], incomplete: str, positional: str = ""
) -> list[str]:
    """Completions for a hand-parsed command: options, network names after --net, container names.

    `options` are offered for a word starting with "-", `valued` are those
    that take the next word as their value; `args` are the words after the command name; `positional` says what the
    bare words are ("network container": connect's NETWORK then CONTAINER;
    "container": port's CONTAINER; "" nothing completed).
    """
    if incomplete.startswith("-"):
        return [o for o in options if o.startswith(incomplete)]
    if args and args[-1] in _NETWORK_VALUED:
        return network_names(incomplete)
    bare: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = a in valued
        else:
            bare.append(a)
    kinds = positional.split()
    # port's first word may be a verb (ls/add/rm): it does not count as the container
    if kinds == ["container"] and bare and bare[0] in ("ls", "add", "rm"):
        bare = bare[1:]
    if len(bare) < len(kinds):
        kind = kinds[len(bare)]
        if kind == "network":
            return network_names(incomplete)
        if kind == "container":
            return container_names(incomplete)
    return []


def handparsed_command(usage_of: str, positional: str = "") -> type:
    """A typer command class whose completion is complete_handparsed over `module:USAGE_NAME`'s text."""
    from typer.core import TyperCommand

    class HandParsed(TyperCommand):
        def shell_complete(self, ctx: "Any", incomplete: str) -> "list[Any]":
            from importlib import import_module

            from typer.core import CompletionItem  # type: ignore[attr-defined]

            mod, name = usage_of.split(":")
            try:
                module = import_module(mod, __package__)
                usage = getattr(module, name)
                options = usage_options(usage)
                valued = usage_valued(usage)
                # run's parser has the complete tables (spellings the usage text abbreviates)
                flags = getattr(module, "_VALUE_FLAGS", {})
                options += [f for f in (*flags, *getattr(module, "_BOOL_FLAGS", {})) if f not in options]
                valued |= set(flags)
                words = complete_handparsed(options, valued, list(ctx.args), incomplete, positional)
            except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
                return []
            return [CompletionItem(w) for w in words]

    return HandParsed
