"""The README's quickstart and the docs pages' examples, run as written.

A page marks what the test runs: `<!-- docs-test: run -->` before a fenced
block whose `$ ` lines are commands, each followed by the output it shows;
`<!-- docs-test: file PATH -->` before a block that is a file the commands
use (written to PATH first). Blocks without a marker are not run; a page
says in its text why (an illustration). Each page runs in one bash, in a
directory and a CNI environment of its own (NETCONFPATH, CNI_CACHE_DIR,
CNIRUN_STATE_DIR, CNIRUN_LOCK_FILE, host-local's dataDir), so Docker runs are
in sandbox mode whatever runtime is installed. Every command must succeed and
its output must have the shape shown: the same lines once addresses, IDs,
MACs and numbers are replaced by placeholders and spaces collapsed (`...`
alone on a line stands for any lines, at the end of a line for any rest).
Afterwards nothing of the page is left on the host.

Address plan: subnets 10.218.0.0/16 (each page declares its own below; the
World's unused network is 10.218.24N.0/24), host ports 19218-19270,
container, network and project names starting with the page's prefix.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, Net, _make_world, needs_docker, needs_plugins, needs_root

RUN = "<!-- docs-test: run -->"
FILE = re.compile(r"<!-- docs-test: file (\S+) -->")
FENCE = re.compile(r"^(\s*)```")


@dataclass
class Command:
    line: str  # what the page shows after `$ `
    shown: list[str]  # the output lines the page shows


@dataclass
class Page:
    path: str
    prefix: str  # names of its containers, networks and projects start with it
    nets: tuple[tuple[str, str], ...]  # (network, IPv4 subnet) of every network it makes


PAGES = [
    Page("README.md", "qs", (("qsnet", "10.218.0.0/24"), ("qsnet2", "10.218.1.0/24"), ("qs_default", "10.218.2.0/24"))),
    Page("docs/live-changes.md", "lc-",
         (("lc-net", "10.218.10.0/24"), ("lc-rate", "10.218.11.0/24"), ("lc-quiet", "10.218.12.0/24"))),
    Page("docs/compose.md", "dc", (("dcdemo_public", "10.218.20.0/24"), ("dcdemo_private", "10.218.21.0/24"),
                                   ("dcwebdb_default", "10.218.22.0/24"))),
    Page("docs/dns.md", "dns-",
         (("dns-net", "10.218.30.0/24"), ("dns-front", "10.218.31.0/24"), ("dns-back", "10.218.32.0/24"))),
    Page("docs/modes.md", "md-", (("md-net", "10.218.40.0/24"),)),
    Page("docs/cli.md", "cli-", (("cli-net", "10.218.50.0/24"), ("cli-fmt", "10.218.51.0/24"))),
    Page("docs/cni-library.md", "cl-",
         (("cl-net", "10.218.60.0/24"), ("cl-api", "10.218.61.0/24"), ("cl-exec", "10.218.62.0/24"))),
    Page("docs/policies.md", "fp-", (("fp-net", "10.218.70.0/24"),)),
]


# -- the extractor ----------------------------------------------------------------
def marked_blocks(text: str) -> list[tuple[str, str, list[str]]]:
    """(kind, file path or "", lines) of every marked fenced block, in page order; indentation removed."""
    lines = text.splitlines()
    out: list[tuple[str, str, list[str]]] = []
    i = 0
    while i < len(lines):
        marker = lines[i].strip()
        f = FILE.fullmatch(marker)
        if marker == RUN or f:
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            m = FENCE.match(lines[j]) if j < len(lines) else None
            assert m, f"line {i + 1}: a docs-test marker must be followed by a fenced block"
            indent = len(m.group(1))
            k = j + 1
            body = []
            while not FENCE.match(lines[k]):
                body.append(lines[k][indent:])
                k += 1
            out.append(("file" if f else "run", f.group(1) if f else "", body))
            i = k
        i += 1
    return out


def commands(block: list[str]) -> list[Command]:
    """The `$ ` commands of a run block, each with the output lines shown after it."""
    assert block and block[0].startswith("$ "), f"a run block starts with a command: {block[:1]}"
    out: list[Command] = []
    for line in block:
        if line.startswith("$ "):
            out.append(Command(line[2:], []))
        else:
            out[-1].shown.append(line)
    return out


# -- the shape of output ----------------------------------------------------------
SHAPES = [  # placeholders hold no digit, so the number pattern never rewrites one
    (re.compile(r"\b(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b", re.I), "<mac>"),
    (re.compile(r"(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?:/\d+)?", re.I), "<ip-six>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?:/\d+)?"), "<ip>"),
    (re.compile(r"\b[0-9a-f]{12,}\b"), "<id>"),
    (re.compile(r"\bveth[0-9a-f]{8}\b"), "<veth>"),  # the bridge plugin's host-side names
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def shape(line: str) -> str:
    """The line with MACs, addresses, IDs and numbers replaced by placeholders and runs of spaces by one."""
    line = line.strip()
    for pattern, placeholder in SHAPES:
        line = pattern.sub(placeholder, line)
    return line


def same_shape(shown: list[str], real: list[str]) -> bool:
    """Whether `real` has the shape of `shown`: line by line, `...` matching any lines (or any rest of a line)."""
    want = [shape(x) for x in shown]
    got = [shape(x) for x in real]

    def match(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(got)
        if want[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(got) + 1))
        if j == len(got):
            return False
        w = want[i]
        ok = got[j].startswith(w[:-3].rstrip()) if w.endswith("...") else got[j] == w
        return ok and match(i + 1, j + 1)

    return match(0, 0)


# -- running a page ---------------------------------------------------------------
MARK = "@@docs-test rc="


def script(cmds: list[Command]) -> str:
    """One bash script: every command, its exit status after a marker line; stops at the first failure."""
    out = ["exec </dev/null 2>&1"]
    for c in cmds:
        out.append(c.line)
        out.append(f'rc=$?; printf "\\n{MARK}%d\\n" "$rc"; [ "$rc" = 0 ] || exit 99')
    return "\n".join(out) + "\n"


def outputs(text: str) -> list[tuple[int, list[str]]]:
    """(exit status, output lines) of each command that ran, from the script's combined output."""
    out: list[tuple[int, list[str]]] = []
    rest = text
    while MARK in rest:
        before, _, after = rest.partition("\n" + MARK)
        rc, _, rest = after.partition("\n")
        out.append((int(rc), before.splitlines()))
    return out


def others_left_out(page: Page, cmds: list[Command], ran: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    """`cnirun ps` output without the rows of other tests' containers.

    ps also lists the hook-mode containers of the runtime installed in dockerd,
    which other tests start and stop meanwhile: of its output only the header,
    the rows naming the page's containers (by name, or by an ID the page's
    commands printed before) and error and exit-status lines are compared.
    """
    seen: set[str] = set()
    out = []
    for c, (rc, real) in zip(cmds, ran):
        if c.line.startswith("cnirun ps"):
            def ours(line: str) -> bool:
                ids = re.findall(r"\b[0-9a-f]{12,64}\b", line)
                return (page.prefix in line or any(full.startswith(i) for i in ids for full in seen)
                        or line.startswith(("cnirun:", "exit ")))  # an error, the status the page echoes

            header = real[:1] if real and real[0].split()[:1] in (["CONTAINER"], ["NAME"]) else []
            real = header + [x for x in real[len(header):] if ours(x)]
        seen.update(re.findall(r"\b[0-9a-f]{64}\b", "\n".join(real)))
        out.append((rc, real))
    return out


def run_page(page: Page, tmp_path: Path) -> None:
    text = (REPO / page.path).read_text()
    blocks = marked_blocks(text)
    cmds = [c for kind, _, body in blocks if kind == "run" for c in commands(body)]
    assert cmds, f"{page.path}: no docs-test run blocks"
    shown_subnets = set(re.findall(r"10\.218\.\d+\.0/24", "\n".join("\n".join(b) for _, _, b in blocks)))
    assert shown_subnets == {s for _, s in page.nets}, f"{page.path}: its networks are declared in PAGES"

    n = 240 + PAGES.index(page)
    w = _make_world(tmp_path, 218, "docs", net=f"{page.prefix}w{{n}}", bridge="cdw218x{n}",
                    subnet="10.218.{n}.0/24", n=n, name_prefix=f"^{page.prefix}")
    (Path(w.env["NETCONFPATH"]) / f"{w.net}.conflist").unlink()  # the page sees only what it makes
    from cnirun.netstore.networks import auto_bridge_name

    for name, subnet in page.nets:
        w.watch(Net(name, auto_bridge_name(name), subnet, created=True))  # removed at the end if still there
    w.env.pop("CNIRUN_DEFAULT_NETWORK")
    w.env.update(CNIRUN_LOCK_FILE=str(tmp_path / "cni.lock"), CNIRUN_IPAM_DATA_DIR=str(w.data_dir),
                 PATH=f"{Path(sys.executable).parent}:{w.env['PATH']}", CNIRUN_SANDBOX="auto")
    work = tmp_path / "work"
    work.mkdir()
    try:
        for kind, path, body in blocks:
            if kind == "file":
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_text("\n".join(body) + "\n")
        log = tmp_path / "output"
        with log.open("w") as f:
            p = subprocess.run(["bash", "-c", script(cmds)], env=w.env, cwd=work, stdout=f, stderr=subprocess.STDOUT,
                               timeout=600)
        ran = others_left_out(page, cmds, outputs(log.read_text()))
        drift = [f"`{c.line}` printed\n" + "\n".join(real) + "\nwhere the page shows\n" + "\n".join(c.shown)
                 for c, (rc, real) in zip(cmds, ran) if rc == 0 and not same_shape(c.shown, real)]
        failed = [f"`{c.line}` failed with exit {rc}:\n" + "\n".join(real) for c, (rc, real) in zip(cmds, ran) if rc]
        assert not failed and not drift, f"{page.path}:\n" + "\n\n".join(failed + drift)
        assert len(ran) == len(cmds) and p.returncode == 0, f"{page.path}: bash ended early:\n{log.read_text()}"
        named = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{page.prefix}"], capture_output=True,
                               text=True).stdout.split()
        assert not named, f"{page.path}: containers left: {named}"
        bridges = [b for b in (auto_bridge_name(name) for name, _ in page.nets)
                   if subprocess.run(["ip", "link", "show", b], capture_output=True).returncode == 0]
        assert not bridges, f"{page.path}: bridges left: {bridges}"
        netns = [n for n in os.listdir("/run/netns") if n.startswith(page.prefix)] if os.path.isdir("/run/netns") \
            else []
        assert not netns, f"{page.path}: network namespaces left: {netns}"
        confs = list(Path(w.env["NETCONFPATH"]).iterdir())
        assert not confs, f"{page.path}: networks left: {confs}"
        if not any("cnirun exec" in c.line or "podman" in c.line for c in cmds) and os.path.isdir("/run/netns"):
            # only exec and Podman runs make named netns: a new one is another test's, made meanwhile
            w.netns_before |= set(os.listdir("/run/netns"))
        w.assert_clean(within=10.0)
    finally:
        w.finish()


@needs_root
@needs_plugins
@needs_docker
@pytest.mark.docker
@pytest.mark.parametrize("page", PAGES, ids=[p.path for p in PAGES])
def test_page_examples_run_as_written(page: Page, tmp_path: Path) -> None:
    """Every marked command of the page succeeds in a private environment, prints output of the shape the
    page shows, and the page's examples leave no container, network, bridge, address or rule behind."""
    run_page(page, tmp_path)


# -- the checker itself -------------------------------------------------------------
def test_shape_placeholders_and_ellipsis() -> None:
    """Addresses, IDs, MACs and numbers are placeholders; words and line counts are not; `...` spans lines."""
    assert same_shape(["64 bytes from 10.218.20.3: seq=0 ttl=64 time=1.752 ms"],
                      ["64 bytes from 10.218.20.9: seq=0 ttl=64 time=0.1 ms"])
    assert same_shape(["3f1c5e0a9b7d   docker   busybox   qsweb   qsnet   eth0   10.218.0.3/24"],
                      ["a7819a1593a9   docker   busybox   qsweb   qsnet     eth0    10.218.0.12/24"])
    assert not same_shape(["hello from qsweb"], ["hello from web"])
    assert not same_shape(["a", "b"], ["a"])
    assert same_shape(["x", "...", "y"], ["x", "1", "2", "y"]) and same_shape(["..."], [])
    assert same_shape(['cnirun: no net configuration with name "q" in ...'],
                      ['cnirun: no net configuration with name "q" in /tmp/x (known networks: cnirun)'])
    assert not same_shape(['cnirun: no net configuration with name "q" in ...'], ['cnirun: bad'])


def test_every_command_block_of_a_tested_page_is_run_or_said_not_to_be() -> None:
    """A fenced block with `$ ` commands on a tested page either has the run marker or is one the text just
    before it calls an illustration, not run: an example cannot silently fall out of the test."""
    for page in PAGES:
        lines = (REPO / page.path).read_text().splitlines()
        i = 0
        while i < len(lines):
            if not FENCE.match(lines[i]):
                i += 1
                continue
            end = next(k for k in range(i + 1, len(lines)) if FENCE.match(lines[k]))
            if any(x.strip().startswith("$ ") for x in lines[i + 1:end]):
                before = [x.strip() for x in lines[max(0, i - 10):i] if x.strip()]
                said = " ".join(before).lower()
                assert before[-1] == RUN or ("illustration" in said and "not run" in said), (
                    f"{page.path}:{i + 1}: a block of commands neither marked {RUN} nor said to be an illustration")
            i = end + 1
