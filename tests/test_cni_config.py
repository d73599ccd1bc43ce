"""Netconf loading and validation (cnirun.cni.config), checked against libcni's rules."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnirun.cni import config as netconf
from cnirun.core.errors import ConfigError, NetworkNotFound
from cnirun.core.version import select

from _core_fixtures import CoreEnv, core  # noqa: F401  (fixture)

NOOP = {"type": "noop"}


def test_conflists_first_then_confs_each_sorted(core: CoreEnv) -> None:
    core.write("b.conf", {"cniVersion": "1.0.0", "name": "conf-b", "type": "noop"})
    core.write("a.json", {"cniVersion": "1.0.0", "name": "conf-a", "type": "noop"})
    core.conflist("list-z", [NOOP], filename="z.conflist")
    core.conflist("list-y", [NOOP], filename="y.conflist")
    core.write("ignored.txt", "not a netconf")
    (core.netconf / "dir.conflist").mkdir()  # directories are skipped
    files = [p.name for p in netconf.config_files(core.netconf)]
    assert files == ["y.conflist", "z.conflist", "a.json", "b.conf"]
    nets, errors = netconf.load_all(str(core.netconf))
    assert errors == []
    assert [n.name for n in nets] == ["list-y", "list-z", "conf-a", "conf-b"]


def test_conflist_wins_over_conf_of_the_same_name(core: CoreEnv) -> None:
    core.write("00-first.conf", {"cniVersion": "0.4.0", "name": "same", "type": "noop", "from": "conf"})
    core.conflist("same", [dict(NOOP, **{"from": "conflist"})], filename="99-last.conflist")
    net = netconf.find_network("same", str(core.netconf))
    assert net.source.endswith("99-last.conflist")
    assert net.plugins[0].raw["from"] == "conflist"


def test_lookup_by_name_first_sorted_match_wins(core: CoreEnv) -> None:
    core.conflist("dup", [dict(NOOP, n=1)], filename="10-dup.conflist")
    core.conflist("dup", [dict(NOOP, n=2)], filename="20-dup.conflist")
    assert netconf.find_network("dup", str(core.netconf)).plugins[0].raw["n"] == 1


def test_netconfpath_with_several_directories(core: CoreEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    d1.mkdir()
    d2.mkdir()
    (d1 / "a.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "only1", "plugins": [NOOP]}))
    (d2 / "a.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "only2", "plugins": [NOOP]}))
    (d2 / "b.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "only1", "plugins": [dict(NOOP, x=2)]}))
    monkeypatch.setenv("NETCONFPATH", f"{d1}:{tmp_path / 'missing'}:{d2}")
    assert netconf.netconf_dirs(None) == [str(d1), str(tmp_path / "missing"), str(d2)]
    assert netconf.find_network("only2").source == str(d2 / "a.conflist")
    # the first directory wins for a name defined twice
    assert "x" not in netconf.find_network("only1").plugins[0].raw
    nets, _ = netconf.load_all()
    assert [n.name for n in nets] == ["only1", "only2"]


def test_unknown_network_names_the_directory(core: CoreEnv) -> None:
    core.conflist("present", [NOOP])
    with pytest.raises(NetworkNotFound) as ei:
        netconf.find_network("absent", str(core.netconf))
    assert 'no net configuration with name "absent"' in str(ei.value)
    assert str(core.netconf) in str(ei.value)
    assert ei.value.code == 7


def test_missing_directory_is_empty_not_an_error(tmp_path: Path) -> None:
    assert netconf.config_files(tmp_path / "nope") == []
    assert netconf.load_all(str(tmp_path / "nope")) == ([], [])


def test_directory_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        netconf.config_files(f)


def test_unreadable_directory_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any directory, so simulate EACCES here; test_cli_cni.py
    # checks the real thing by running cnirun as an unprivileged user.
    def denied(self: Path):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(ConfigError, match="permission denied"):
        netconf.config_files(tmp_path)


def test_single_plugin_conf_is_wrapped_as_a_list(core: CoreEnv) -> None:
    core.write("x.conf", {"cniVersion": "0.3.1", "name": "single", "type": "noop", "custom": {"a": [1]}})
    net = netconf.find_network("single", str(core.netconf))
    assert net.cni_version == "0.3.1"
    assert net.types == ["noop"]
    wrapped = json.loads(net.bytes)
    assert wrapped == {
        "cniVersion": "0.3.1",
        "name": "single",
        "plugins": [{"cniVersion": "0.3.1", "name": "single", "type": "noop", "custom": {"a": [1]}}],
    }


def test_conflist_bytes_are_the_file_bytes(core: CoreEnv) -> None:
    text = '{"cniVersion":"1.0.0",  "name":"raw", "plugins":[{"type":"noop"}] }\n'
    p = core.write("raw.conflist", text)
    assert netconf.load_file(p).bytes == text.encode()


def test_unknown_keys_are_kept_verbatim(core: CoreEnv) -> None:
    extra = {"type": "noop", "vendor.example/knob": {"deep": [1, None, "x"]}, "ipMasq": True, "args": {"cni": {"k": 1}}}
    core.conflist("keep", [extra], topLevelUnknown=42)
    net = netconf.find_network("keep", str(core.netconf))
    assert net.plugins[0].raw == extra
    assert net.raw["topLevelUnknown"] == 42


# -- per-network plugin sub-directory and loadOnlyInlinedPlugins -------------


def test_subdirectory_plugins_are_appended_after_inline_ones(core: CoreEnv) -> None:
    core.conflist("sub", [dict(NOOP, n="inline")])
    sub = core.netconf / "sub"
    sub.mkdir()
    (sub / "20-b.conf").write_text(json.dumps({"type": "noop", "n": "b"}))
    (sub / "10-a.conf").write_text(json.dumps({"type": "noop", "n": "a"}))
    (sub / "ignored.json").write_text(json.dumps({"type": "noop", "n": "json"}))
    net = netconf.find_network("sub", str(core.netconf))
    assert [p.raw["n"] for p in net.plugins] == ["inline", "a", "b"]
    # the cached config (net.bytes) holds the effective chain, so DEL from cache runs it all
    assert [p["n"] for p in json.loads(net.bytes)["plugins"]] == ["inline", "a", "b"]


def test_plugins_only_in_subdirectory(core: CoreEnv) -> None:
    core.write("nolist.conflist", {"cniVersion": "1.0.0", "name": "nolist"})
    (core.netconf / "nolist").mkdir()
    (core.netconf / "nolist" / "p.conf").write_text(json.dumps({"type": "noop"}))
    assert netconf.find_network("nolist", str(core.netconf)).types == ["noop"]


def test_load_only_inlined_plugins_ignores_the_subdirectory(core: CoreEnv) -> None:
    core.conflist("inl", [dict(NOOP, n="inline")], loadOnlyInlinedPlugins=True)
    (core.netconf / "inl").mkdir()
    (core.netconf / "inl" / "p.conf").write_text(json.dumps({"type": "noop", "n": "sub"}))
    net = netconf.find_network("inl", str(core.netconf))
    assert [p.raw["n"] for p in net.plugins] == ["inline"]
    assert net.load_only_inlined_plugins is True


def test_load_only_inlined_plugins_needs_plugins(core: CoreEnv) -> None:
    p = core.write("bad.conflist", {"cniVersion": "1.0.0", "name": "bad", "loadOnlyInlinedPlugins": True})
    with pytest.raises(ConfigError) as ei:
        netconf.load_file(p)
    assert str(p) in str(ei.value) and "plugins" in str(ei.value) and "loadOnlyInlinedPlugins" in str(ei.value)


def test_no_plugins_anywhere_is_an_error(core: CoreEnv) -> None:
    p = core.write("empty.conflist", {"cniVersion": "1.0.0", "name": "empty", "plugins": []})
    with pytest.raises(ConfigError, match="no plugins"):
        netconf.load_file(p)


def test_bad_plugin_in_subdirectory_names_that_file(core: CoreEnv) -> None:
    core.conflist("subbad", [NOOP])
    (core.netconf / "subbad").mkdir()
    bad = core.netconf / "subbad" / "x.conf"
    bad.write_text(json.dumps({"notype": 1}))
    with pytest.raises(ConfigError) as ei:
        netconf.find_network("subbad", str(core.netconf))
    assert str(bad) in str(ei.value) and "type" in str(ei.value)


# -- disableCheck / disableGC ----------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), ("true", True), ("TRUE", True), ("False", False), ("false", False)],
)
def test_disable_flags_bool_and_string_forms(core: CoreEnv, value: object, expected: bool) -> None:
    core.conflist("flags", [NOOP], disableCheck=value, disableGC=value)
    net = netconf.find_network("flags", str(core.netconf))
    assert net.disable_check is expected
    assert net.disable_gc is expected


def test_disable_flags_default_false(core: CoreEnv) -> None:
    core.conflist("flags", [NOOP])
    net = netconf.find_network("flags", str(core.netconf))
    assert (net.disable_check, net.disable_gc) == (False, False)


@pytest.mark.parametrize("key", ["disableCheck", "disableGC", "loadOnlyInlinedPlugins"])
@pytest.mark.parametrize("value", ["yes", 1, None, "tru"])
def test_disable_flags_invalid_values(core: CoreEnv, key: str, value: object) -> None:
    p = core.conflist("flags", [NOOP], **{key: value})
    with pytest.raises(ConfigError) as ei:
        netconf.load_file(p)
    assert str(p) in str(ei.value) and key in str(ei.value) and "expected true or false" in str(ei.value)


# -- cniVersion / cniVersions ------------------------------------------------


@pytest.mark.parametrize(
    "version, versions, expected",
    [
        ("1.0.0", None, "1.0.0"),
        ("0.3.1", None, "0.3.1"),
        ("9.9.9", None, "9.9.9"),  # a lone cniVersion is used unfiltered (libcni)
        (None, None, "0.1.0"),
        ("0.4.0", ["1.0.0", "1.1.0"], "1.1.0"),
        ("0.4.0", ["1.0.0", "2.0.0"], "1.0.0"),  # above 1.1.0: dropped
        (None, ["0.3.1", "0.4.0"], "0.4.0"),
        ("1.0.0", ["0.3.1"], "1.0.0"),  # the union of both
    ],
)
def test_version_selection(core: CoreEnv, version: str | None, versions: list[str] | None, expected: str) -> None:
    top: dict[str, object] = {}
    if versions is not None:
        top["cniVersions"] = versions
    obj = {"name": "v", "plugins": [NOOP], **top}
    if version is not None:
        obj["cniVersion"] = version
    p = core.write("v.conflist", obj)
    net = netconf.load_file(p)
    assert net.cni_version == expected
    assert select(version, versions) == expected


@pytest.mark.parametrize(
    "obj, key, problem",
    [
        ({"cniVersion": "one", "name": "v", "plugins": [NOOP]}, "cniVersion", "invalid version"),
        ({"cniVersion": 1, "name": "v", "plugins": [NOOP]}, "cniVersion", "expected a string"),
        ({"cniVersions": "1.0.0", "name": "v", "plugins": [NOOP]}, "cniVersions", "expected a list"),
        ({"cniVersions": ["x.y"], "name": "v", "plugins": [NOOP]}, "cniVersion", "invalid version"),
        ({"cniVersions": ["2.0.0"], "name": "v", "plugins": [NOOP]}, "cniVersion", "no supported version"),
    ],
)
def test_version_errors_name_file_and_key(core: CoreEnv, obj: dict, key: str, problem: str) -> None:
    p = core.write("v.conflist", obj)
    with pytest.raises(ConfigError) as ei:
        netconf.load_file(p)
    text = str(ei.value)
    assert str(p) in text and key in text and problem in text, text


# -- validation errors: file, key and problem -------------------------------


@pytest.mark.parametrize(
    "content, key, problem",
    [
        ('{"name": "x", "plugins": [', "", "invalid JSON at line 1"),
        ("[1, 2]", "", "expected a JSON object"),
        ('{"cniVersion": "1.0.0", "plugins": [{"type": "noop"}]}', "name", "missing network name"),
        ('{"cniVersion": "1.0.0", "name": "", "plugins": [{"type": "noop"}]}', "name", "missing network name"),
        ('{"cniVersion": "1.0.0", "name": "has space", "plugins": [{"type": "noop"}]}', "name", "invalid network name"),
        ('{"cniVersion": "1.0.0", "name": "-dash", "plugins": [{"type": "noop"}]}', "name", "invalid network name"),
        ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"x": 1}]}', "plugins[0].type", "missing plugin type"),
        ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "noop"}, {"type": ""}]}', "plugins[1].type",
         "missing plugin type"),
        ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../bin/sh"}]}', "plugins[0].type",
         "path separator"),
        ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "a\\\\b"}]}', "plugins[0].type",
         "path separator"),
        ('{"cniVersion": "1.0.0", "name": "n", "plugins": {"type": "noop"}}', "plugins", "expected a list"),
        ('{"cniVersion": "1.0.0", "name": "n", "plugins": ["noop"]}', "plugins[0]", "expected a JSON object"),
        ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "noop", "capabilities": [1]}]}',
         "plugins[0].capabilities", "expected an object"),
    ],
)
def test_conflist_validation_errors(core: CoreEnv, content: str, key: str, problem: str) -> None:
    p = core.write("bad.conflist", content)
    with pytest.raises(ConfigError) as ei:
        netconf.load_file(p)
    text = str(ei.value)
    assert ei.value.code == 7
    assert text.startswith(str(p)), text
    assert key in text and problem in text, text
    assert "\n" not in text


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"cniVersion": "1.0.0", "name": "s"}', "missing plugin type"),
        ('{"cniVersion": "1.0.0", "name": "", "type": "noop"}', "missing network name"),
        ('{"cniVersion": "1.0.0", "name": "s", "type": "/usr/bin/x"}', "path separator"),
        ("not json", "invalid JSON"),
    ],
)
def test_single_conf_validation_errors(core: CoreEnv, content: str, problem: str) -> None:
    p = core.write("s.conf", content)
    with pytest.raises(ConfigError) as ei:
        netconf.load_file(p)
    assert str(p) in str(ei.value) and problem in str(ei.value)


def test_non_utf8_file(core: CoreEnv) -> None:
    p = core.netconf / "bin.conflist"
    p.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        netconf.load_file(p)


def test_capabilities_only_true_values_count(core: CoreEnv) -> None:
    core.conflist("caps", [dict(NOOP, capabilities={"portMappings": True, "ips": False, "mac": "true"})])
    net = netconf.find_network("caps", str(core.netconf))
    assert net.plugins[0].capabilities == {"portMappings": True}


def test_shipped_default_network_is_valid() -> None:
    from cnirun.cni.defaults import builtin_networks, default_network_name

    nets = {n.name: n for n in builtin_networks()}
    net = nets[default_network_name()]
    assert net.types == ["bridge", "portmap", "firewall", "tuning", "bandwidth", "cnirun-policy"]
    assert net.plugins[0].raw["ipam"]["type"] == "host-local"
    for subnet in net.subnets():
        import ipaddress

        s = ipaddress.ip_network(subnet)
        for taken in ("172.17.0.0/16", "10.88.0.0/16"):
            assert not s.overlaps(ipaddress.ip_network(taken))


def test_cni_object_falls_back_to_builtin_default(core: CoreEnv) -> None:
    cni = core.cni()
    assert cni.network("cnirun").name == "cnirun"
    core.conflist("cnirun", [NOOP])
    assert cni.network("cnirun").types == ["noop"]  # NETCONFPATH overrides the built-in
    assert [n.name for n in cni.networks()].count("cnirun") == 1
    with pytest.raises(NetworkNotFound) as ei:
        cni.network("nope")
    assert "known networks: cnirun" in str(ei.value)
    assert os.fspath(core.netconf) in str(ei.value)


# -- name-less .conf files, broken files beside good ones, --net all ------------------------------
def test_nameless_conf_is_named_after_its_file_stem(core: CoreEnv) -> None:
    # upstream's walkthrough: 99-loopback.conf has no "name", and libcni loads it
    p = core.write("99-loopback.conf", {"cniVersion": "0.2.0", "type": "loopback"})
    net = netconf.load_file(p)
    assert net.name == "99-loopback" and net.types == ["loopback"]
    assert json.loads(net.bytes)["name"] == "99-loopback"


def test_all_networks_in_libcni_file_order(core: CoreEnv) -> None:
    core.write("99-loopback.conf", {"cniVersion": "0.2.0", "type": "loopback"})
    core.write("10-mynet.conf", {"cniVersion": "0.2.0", "name": "mynet", "type": "bridge"})
    core.write("50-z.conflist", {"cniVersion": "1.0.0", "name": "zlist", "plugins": [{"type": "noop"}]})
    core.write("60-dup.conf", {"cniVersion": "1.0.0", "name": "mynet", "type": "noop"})
    assert [n.name for n in netconf.all_networks(str(core.netconf))] == ["zlist", "mynet", "99-loopback"]


@pytest.mark.parametrize(
    "broken",
    [
        '{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge",',
        "[1,2",
        '{"cniVersion":"1.0.0","name":"x","plugins":[]',
        "[" * 100000,
        '{"a": ' + "9" * 5000 + "}",
    ],
)
def test_broken_file_warns_and_does_not_hide_other_networks(
    core: CoreEnv, broken: str, capsys: pytest.CaptureFixture[str]
) -> None:
    core.write("00-broken.conflist", broken)
    core.write("good.conflist", {"cniVersion": "1.0.0", "name": "good", "plugins": [{"type": "noop"}]})
    assert netconf.find_network("good", str(core.netconf)).name == "good"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "00-broken.conflist" in err
    with pytest.raises(NetworkNotFound):
        netconf.find_network("other", str(core.netconf))


def test_broken_file_is_the_error_when_it_may_be_the_network_asked_for(core: CoreEnv) -> None:
    core.write("10-x.conflist", '{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge",')
    with pytest.raises(ConfigError, match="10-x.conflist: invalid JSON"):
        netconf.find_network("x", str(core.netconf))


def test_fuzzed_netconf_files_never_raise_anything_but_config_errors(core: CoreEnv) -> None:
    """Truncations, random bytes, nesting, huge numbers, invalid UTF-8: ConfigError or a network."""
    import random

    rng = random.Random(8)
    seed = json.dumps({
        "cniVersion": "1.0.0", "name": "fz", "plugins": [
            {"type": "bridge", "bridge": "b0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/24"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }).encode()
    samples: list[bytes] = [seed[:i] for i in range(len(seed))]
    for _ in range(300):
        b = bytearray(seed)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        samples.append(bytes(b))
    samples += [os.urandom(rng.randint(0, 64)) for _ in range(100)]
    samples += [b"[" * 50000, b"{" * 50000, b'{"name": "a", "plugins": ' + b"[" * 3000 + b"]" * 3000 + b"}",
                b'{"cniVersion": 1e400, "name": "x"}', b'{"name": "\xc3\x28"}', b"\xef\xbb\xbf{}",
                b'{"name": "x", "plugins": [{"type": "a", "capabilities": []}]}', b"null", b'"x"',
                b'{"name": "x", "cniVersion": "9.9.9.9", "plugins": [{"type": "a"}]}']
    loaded = 0
    for i, data in enumerate(samples):
        for suffix in (".conflist", ".conf"):
            p = core.netconf / f"f{i}{suffix}"
            p.write_bytes(data)
            try:
                netconf.load_file(p)
                loaded += 1
            except ConfigError as e:
                assert "\n" not in str(e) and str(p) in str(e)
            finally:
                p.unlink()
    assert loaded >= 1  # the untouched prefix-complete seed loads


# -- the bridge a network plugs into (config.bridge_of) ----------------------

BRIDGE_SHAPES = [
    ("bridge first", [{"type": "bridge", "bridge": "c24ia"}, {"type": "portmap"}], "c24ia"),
    ("bridge later in the chain", [{"type": "tuning"}, {"type": "bridge", "bridge": "c24ib"}], "c24ib"),
    ("bridge named nowhere", [{"type": "bridge"}, {"type": "firewall"}], "cni0"),
    ("two bridges", [{"type": "bridge", "bridge": "c24ic"}, {"type": "bridge", "bridge": "c24id"}], "c24ic"),
    ("no bridge", [{"type": "noop"}, {"type": "portmap"}], ""),
    ("a non-bridge main plugin", [{"type": "macvlan", "master": "eth0", "bridge": "c24ie"}], ""),
]


@pytest.mark.parametrize("plugins, bridge", [s[1:] for s in BRIDGE_SHAPES], ids=[s[0] for s in BRIDGE_SHAPES])
def test_bridge_of_answers_alike_for_every_conflist_shape(core: CoreEnv, plugins: list, bridge: str) -> None:
    """bridge_of gives one answer for a loaded network, its raw conflist and its cached config; the callers
    that ask it (the CNI runtime's chain locks, `network ls`, the planner, a MAC's neighbours) agree."""
    from cnirun.cli.network_cmd import network_summary
    from cnirun.cni.runtime import _bridges
    from cnirun.netstore.located import ComposeError, parse
    from cnirun.netstore.network_spec import parse_networks_section
    from cnirun.netstore.networks import Planner

    core.conflist("t24i-shape", plugins)
    net = netconf.find_network("t24i-shape", str(core.netconf))
    assert netconf.bridge_of(net) == netconf.bridge_of(net.raw) == netconf.bridge_of(json.loads(net.bytes)) == bridge
    assert set(netconf.bridges_of(net)) == {p.get("bridge") or "cni0" for p in plugins if p["type"] == "bridge"}
    assert set(sum(_bridges(net), ())) == set(netconf.bridges_of(net))
    assert network_summary(core.cni(), net)["bridge"] == bridge
    doc = parse("networks:\n  t24i-other:\n    driver_opts: {com.docker.network.bridge.name: c24ia}\n", "n.yaml")
    spec = parse_networks_section(doc, doc.data["networks"])[0]
    if bridge == "c24ia":  # the planner sees the bridge as taken
        with pytest.raises(ComposeError, match="bridge c24ia is already used by network 't24i-shape'"):
            Planner([net]).choose_bridge(spec)
    else:
        assert Planner([net]).choose_bridge(spec) == "c24ia"


@pytest.mark.parametrize("conf, bridge", [
    ({"cniVersion": "1.0.0", "name": "t24i-one", "type": "bridge", "bridge": "c24ia"}, "c24ia"),
    ({"cniVersion": "1.0.0", "name": "t24i-one", "type": "ptp"}, ""),
    ({"cniVersion": "1.0.0", "name": "t24i-one", "plugins": "not a list"}, ""),
    (["not", "a", "config"], ""),
])
def test_bridge_of_a_single_plugin_config(core: CoreEnv, conf: object, bridge: str) -> None:
    """A single plugin's config (a .conf file, or a libcni cache entry's config) has its own plugin's bridge."""
    assert netconf.bridge_of(conf) == bridge  # type: ignore[arg-type]
    if isinstance(conf, dict) and "type" in conf:
        core.write("t24i-one.conf", conf)
        assert netconf.bridge_of(netconf.find_network("t24i-one", str(core.netconf))) == bridge


def test_meta_of_reads_the_cnirun_object_of_a_network_or_a_raw_conflist(core: CoreEnv) -> None:
    """meta_of gives the top-level "cnirun" object, of a loaded network or a raw conflist alike; {} without one."""
    core.conflist("t24i-meta", [NOOP], cnirun={"allowLabels": False, "dns": False})
    net = netconf.find_network("t24i-meta", str(core.netconf))
    assert netconf.meta_of(net) == netconf.meta_of(json.loads(net.bytes)) == {"allowLabels": False, "dns": False}
    assert not netconf.labels_allowed(net)
    for raw in ({"name": "x"}, {"cnirun": "not an object"}, {"cnirun": None}, ["not", "a", "conflist"]):
        assert netconf.meta_of(raw) == {}  # type: ignore[arg-type]


def test_ipam_ranges_as_host_local_reads_them(core: CoreEnv) -> None:
    """ipam_ranges lists a top-level subnet (with its gateway) first, then every range of every range set;
    subnets() and has_ipv6 answer from it, and malformed sections count for nothing."""
    ipam = {"type": "host-local", "subnet": "10.229.1.0/24", "gateway": "10.229.1.254",
            "ranges": [[{"subnet": "10.229.2.0/24"}, "junk"], [{"subnet": "fd24:229::/64"}], "junk"]}
    core.conflist("t24i-ranges", [{"type": "bridge", "ipam": ipam}, {"type": "portmap", "ipam": {"ranges": 7}}])
    net = netconf.find_network("t24i-ranges", str(core.netconf))
    assert netconf.ipam_ranges(net.plugins[0].raw) == [
        {"subnet": "10.229.1.0/24", "gateway": "10.229.1.254"}, {"subnet": "10.229.2.0/24"}, {"subnet": "fd24:229::/64"}]
    assert net.subnets() == ["10.229.1.0/24", "10.229.2.0/24", "fd24:229::/64"]
    assert netconf.has_ipv6(net)
    assert netconf.ipam_ranges({"type": "bridge"}) == netconf.ipam_ranges({"ipam": "x"}) == []
    v4 = dict(ipam, ranges=[[{"subnet": "10.229.2.0/24"}]])
    core.conflist("t24i-v4", [{"type": "bridge", "ipam": v4}])
    assert not netconf.has_ipv6(netconf.find_network("t24i-v4", str(core.netconf)))
