"""One output convention (issue 14): --format table|json|TEMPLATE, -q, --no-trunc, --json, across
ps, inspect, network ls and network inspect; the template subset (fuzzed); gc's progress.

Address plan of issue 14's tests: 10.192.0.0/16, bridges cnf14*, networks and containers t14-*.
"""
from __future__ import annotations

import io
import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from _parallel import next_n, run_pid
from conftest import World, _make_world, needs_docker, needs_plugins, needs_root, world_fixture

from cnirun.cli.output import Progress, Template, TemplateError, check_format, parse_template, render

def make_world14(tmp_path: Path) -> World:
    """A World on issue 14's names: network t14-N, bridge cnf14xN, subnet 10.192.N.0/24."""
    return _make_world(tmp_path, 192, net="t14-{n}", bridge="cnf14x{n}", n=next_n("192") + 10 * (run_pid() % 20))


world14 = world_fixture(make_world14)


RECORD: dict[str, Any] = {
    "name": "t14-a", "run_id": "abc123", "subnets": ["10.192.1.0/24", "fd14::/64"], "labels": {"team": "blue"},
    "managed": True, "attachments": [{"ifname": "eth0", "addresses": ["10.192.1.5/24"]},
                                     {"ifname": "eth1", "addresses": []}],
    "nested": {"Deep": {"value": 7}}, "none": None,
}


# -- the template subset ------------------------------------------------------------------------
@pytest.mark.parametrize("tpl,want", [
    ("{{.Name}}", "t14-a"),
    ("{{.name}}", "t14-a"),
    ("{{.RunID}}", "abc123"),
    ("{{.run_id}}", "abc123"),
    ("{{.Nested.Deep.Value}}", "7"),
    ("{{json .Labels}}", '{"team":"blue"}'),
    ("{{json .Subnets}}", '["10.192.1.0/24","fd14::/64"]'),
    ("{{.Subnets}}", "[10.192.1.0/24 fd14::/64]"),
    ("{{.Labels}}", "map[team:blue]"),
    ("{{index .Labels \"team\"}}", "blue"),
    ("{{index .Labels \"absent\"}}", ""),
    ("{{index .Subnets 1}}", "fd14::/64"),
    ("{{join .Subnets \",\"}}", "10.192.1.0/24,fd14::/64"),
    ("{{len .Attachments}}", "2"),
    ("{{upper .Name}}", "T14-A"),
    ("{{range .Attachments}}{{.Ifname}}={{join .Addresses \",\"}};{{end}}", "eth0=10.192.1.5/24;eth1=;"),
    ("{{range .Labels}}{{.}}{{end}}", "blue"),
    ("{{if .Managed}}yes{{else}}no{{end}}", "yes"),
    ("{{if .None}}yes{{else}}no{{end}}", "no"),
    ("{{if .Absent}}yes{{else}}no{{end}}", "no"),
    ("{{range .Attachments}}{{else}}empty{{end}}", ""),
    ("{{range .Attachments}}{{range .Addresses}}{{else}}none {{end}}{{end}}", "none "),
    ("name: {{ .Name }} !", "name: t14-a !"),
    ("{{.Managed}} {{.None}}", "true <no value>"),
])
def test_template_subset(tpl: str, want: str) -> None:
    assert Template(tpl).render(RECORD) == want


def test_json_dot_is_the_record_on_one_line() -> None:
    assert json.loads(Template("{{json .}}").render(RECORD)) == RECORD
    assert "\n" not in Template("{{json .}}").render(RECORD)


@pytest.mark.parametrize("tpl,words", [
    ("{{.Nope}}", "no field 'Nope'"),
    ("{{.Nested.Nope}}", "no field 'Nope' in .Nested"),
    ("{{.Name.Deeper}}", "can't evaluate field Deeper"),
    ("{{.Name", "unclosed action"),
    ("{{}}", "empty action"),
    ("{{foo .Name}}", "unknown function 'foo'"),
    ("{{.Name | upper}}", "pipes are not supported"),
    ("{{range .Subnets}}x", "without {{end}}"),
    ("{{end}}", "{{end}} without"),
    ("{{else}}", "{{else}} outside"),
    ("{{json}}", "json takes 1"),
    ("{{index .Labels}}", "index takes 2+"),
    ("{{index .Subnets 9}}", "out of range"),
    ("{{range .Name}}x{{end}}", "range over str"),
    ("{{join .Name \",\"}}", "join needs a list"),
    ("{{len .Managed}}", "len of bool"),
    ('{{index .Labels "x}}', "unterminated string"),
])
def test_bad_templates_are_one_line_errors(tpl: str, words: str) -> None:
    with pytest.raises(TemplateError) as e:
        Template(tpl).render(RECORD)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_fuzzed_templates_never_raise_anything_but_template_error() -> None:
    """Random mixes of template pieces: each renders to text or raises TemplateError, nothing else."""
    pieces = ["{{", "}}", "{", "}", ".", ".Name", ".Subnets", ".Labels", ".Attachments", ".Nope", " ", "json",
              "index", "join", "len", "upper", "range", "if", "else", "end", '"', '","', "`", "0", "1", "-1", "|",
              "\\t", "\\n", "table ", "$", "(", ")", "-", "é", "\x00", ".Nested.Deep", ".."]
    rng = random.Random(14)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        try:
            out = render([RECORD, {"name": "b"}], text, lambda rs: "T")
        except TemplateError as e:
            assert "\n" not in str(e), text
            outcomes["error"] += 1
        else:
            assert isinstance(out, str)
            outcomes["ok"] += 1
    # The alphabet makes both outcomes common: the fuzz exercised the parser and the evaluator.
    assert outcomes["ok"] > 100 and outcomes["error"] > 100, outcomes


def test_table_template_has_headers_and_aligned_columns() -> None:
    rows = [{"name": "t14-a", "run_id": "r1"}, {"name": "t14-longer", "run_id": "r2"}]
    out = render(rows, "table {{.Name}}\\t{{.RunID}}", lambda rs: "")
    assert out.splitlines() == ["NAME         RUN ID", "t14-a        r1", "t14-longer   r2"]


def test_tab_and_newline_escapes_and_json_and_table_formats() -> None:
    rows = [{"name": "x", "n": 1}]
    assert render(rows, "{{.Name}}\\t{{.N}}", lambda rs: "") == "x\t1"
    assert render(rows, "{{.Name}}\\n{{.N}}", lambda rs: "") == "x\n1"
    assert json.loads(render(rows, "json", lambda rs: "")) == rows
    assert render(rows, "table", lambda rs: "THE TABLE") == "THE TABLE"


def test_check_format_refuses_plain_words() -> None:
    with pytest.raises(TemplateError, match="expected table, json or a template"):
        check_format("yaml")
    assert check_format("") == "table"
    assert parse_template("plain text") == ["plain text"]


def test_progress_draws_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, out = Tty(), io.StringIO()
    with Progress("gc: DEL", 3, stream=tty, out=out) as p:
        for item in ("a", "b", "c"):
            p.step(item)
            p.line(f"done {item}")
    assert "gc: DEL [3/3] c" in tty.getvalue() and tty.getvalue().endswith("\r\x1b[2K")
    assert out.getvalue() == "done a\ndone b\ndone c\n"
    pipe, out2 = io.StringIO(), io.StringIO()
    with Progress("gc: DEL", 3, stream=pipe, out=out2) as p:
        for item in ("a", "b", "c"):
            p.step(item)
            p.line(f"done {item}")
    assert pipe.getvalue() == "" and out2.getvalue() == "done a\ndone b\ndone c\n"


# -- the commands ----------------------------------------------------------------------------------


@needs_root
@needs_plugins
def test_network_ls_and_inspect_formats(world14: World) -> None:
    w = world14
    ls = w.cnirun("network", "ls", "--format", "json")
    assert ls.returncode == 0, ls.stderr
    names = [r["name"] for r in json.loads(ls.stdout)]
    assert w.net in names
    tpl = w.cnirun("network", "ls", "--format", "{{.Name}} {{join .Subnets \",\"}}")
    assert f"{w.net} {w.subnet}" in tpl.stdout.splitlines()
    q = w.cnirun("network", "ls", "-q")
    assert q.stdout.split() == names
    table = w.cnirun("network", "ls", "--format", "table {{.Name}}\\t{{.Driver}}\\t{{.Attachments}}")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DRIVER", "ATTACHMENTS"] and any(ln.split()[0] == w.net for ln in lines[1:])
    full = w.cnirun("network", "ls", "--no-trunc")
    assert full.returncode == 0 and str(Path(w.env["NETCONFPATH"]) / f"{w.net}.conflist") in full.stdout
    ins = w.cnirun("network", "inspect", w.net, "--format", "{{json .Conflist}}")
    assert json.loads(ins.stdout)["name"] == w.net
    ins2 = w.cnirun("network", "inspect", w.net, "-f", "{{range .Conflist.Plugins}}{{.Type}} {{end}}")
    assert ins2.stdout.split() == ["bridge", "portmap", "firewall"]
    for args in (("network", "ls", "--format", "{{.Nope}}"), ("network", "inspect", w.net, "--format", "{{.X"),
                 ("network", "ls", "--format", "yaml")):
        bad = w.cnirun(*args)
        assert bad.returncode == 1 and bad.stdout == "", args
        assert bad.stderr.startswith("cnirun: ") and bad.stderr.count("\n") == 1, bad.stderr
        assert "Traceback" not in bad.stderr


@needs_root
@needs_plugins
@needs_docker
def test_ps_and_inspect_formats_with_a_real_container(world14: World) -> None:
    w = world14
    name = f"t14-ps-{w.n}"
    run = w.cnirun("-d", "--rm", "--name", name, "busybox", "sleep", "60", timeout=90)
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()
    try:
        js = w.cnirun("ps", "--format", "json")
        alias = w.cnirun("ps", "--json")
        assert js.returncode == 0, js.stderr
        rows = json.loads(js.stdout)
        assert [r["container"] for r in json.loads(alias.stdout)] == [r["container"] for r in rows]
        mine = [r for r in rows if r["container"] == cid]
        assert len(mine) == 1 and mine[0]["name"] == name and mine[0]["attachments"][0]["network"] == w.net
        assert w.cnirun("ps", "-q").stdout.split() == [r["container"][:12] for r in rows]
        assert cid in w.cnirun("ps", "-q", "--no-trunc").stdout.split()
        tpl = w.cnirun("ps", "--format", "{{.ID}} {{.Names}} {{range .Attachments}}{{.Network}}{{end}}")
        assert f"{cid} {name} {w.net}" in tpl.stdout.splitlines()
        table = w.cnirun("ps", "--format", "table {{.Name}}\\t{{.Image}}")
        assert table.stdout.splitlines()[0].split() == ["NAME", "IMAGE"]
        assert [name, "busybox"] in [ln.split() for ln in table.stdout.splitlines()[1:]]
        default = w.cnirun("ps")
        assert cid[:12] in default.stdout and cid not in default.stdout
        assert cid in w.cnirun("ps", "--no-trunc").stdout
        ins = w.cnirun("inspect", name)
        assert json.loads(ins.stdout)["container"] == cid
        addr = w.cnirun("inspect", name, "--format", "{{range .Attachments}}{{join .Addresses \",\"}}{{end}}")
        assert addr.stdout.strip().startswith(f"10.192.{w.n}.")
        both = w.cnirun("inspect", name, cid[:12], "--format", "json")
        assert [r["container"] for r in json.loads(both.stdout)] == [cid, cid]
        bad = w.cnirun("ps", "--format", "{{.NoSuchField}}")
        assert bad.returncode == 1 and bad.stderr.startswith("cnirun: template: no field 'NoSuchField'")
        assert bad.stderr.count("\n") == 1
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    w.assert_clean(within=20.0)


@needs_root
@needs_plugins
def test_gc_is_line_oriented_off_a_terminal(world14: World) -> None:
    """gc with several stale attachments (their netns removed): one line per DEL, nothing drawn off a terminal."""
    w = world14
    names = [f"t14-gc{w.n}-{i}" for i in range(3)]
    try:
        for ns in names:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            add = w.cnirun("cni", "add", w.net, ns)
            assert add.returncode == 0, add.stderr
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    gc = w.cnirun("gc")
    assert gc.returncode == 0, gc.stderr
    dels = [ln for ln in gc.stdout.splitlines() if ln.startswith(f"DEL {w.net}/eth0 of ")]
    assert len(dels) == 3, gc.stdout
    assert "\r" not in gc.stdout + gc.stderr and "\x1b" not in gc.stdout + gc.stderr
    w.assert_clean()
