"""The result cache in libcni's on-disk format (cnirun.cni.cache), and its use by DEL/CHECK/GC."""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from cnirun.cni import cache as cnicache
from cnirun.core.errors import CacheError

from _core_fixtures import CoreEnv, core  # noqa: F401  (fixture)

RESULT = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/x"}],
          "ips": [{"address": "10.121.99.5/24", "gateway": "10.121.99.1", "interface": 0}]}


def _att(**kw: object) -> cnicache.CachedAttachment:
    base: dict[str, object] = dict(network_name="net", container_id="cid", ifname="eth0", config=b'{"name":"net"}')
    base.update(kw)
    return cnicache.CachedAttachment(**base)  # type: ignore[arg-type]


def test_path_layout(tmp_path: Path) -> None:
    assert cnicache.cache_path(str(tmp_path), "mynet", "abc123", "eth1") == tmp_path / "results" / "mynet-abc123-eth1"


def test_file_format_matches_libcni(tmp_path: Path) -> None:
    att = _att(netns="/run/netns/x", cni_args=[["IgnoreUnknown", "1"], ["K", "V"]],
               capability_args={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
               result=RESULT)
    path = cnicache.write(str(tmp_path / "cache"), att)
    raw = path.read_bytes()
    obj = json.loads(raw)
    # libcni's cachedInfo field names, in its order, compact like Go's json.Marshal
    assert list(obj) == ["kind", "containerId", "config", "ifName", "networkName", "netns", "cniArgs",
                         "capabilityArgs", "result"]
    assert obj["kind"] == "cniCacheV1"
    assert base64.b64decode(obj["config"]) == b'{"name":"net"}'
    assert obj["cniArgs"] == [["IgnoreUnknown", "1"], ["K", "V"]]
    assert obj["result"] == RESULT
    assert b": " not in raw and b", " not in raw
    assert raw.startswith(b'{"kind":"cniCacheV1","containerId":"cid","config":"')


def test_empty_optional_fields_are_omitted(tmp_path: Path) -> None:
    path = cnicache.write(str(tmp_path), _att())
    assert list(json.loads(path.read_bytes())) == ["kind", "containerId", "config", "ifName", "networkName"]


def test_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        root = tmp_path / "a" / "cache"
        path = cnicache.write(str(root), _att())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "results").stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_round_trip(tmp_path: Path) -> None:
    att = _att(netns="/n", cni_args=[["A", "1"]], capability_args={"mac": "x"}, result=RESULT)
    cnicache.write(str(tmp_path), att)
    back = cnicache.read(str(tmp_path), "net", "cid", "eth0")
    assert back is not None
    assert (back.network_name, back.container_id, back.ifname, back.config, back.netns) == (
        "net", "cid", "eth0", b'{"name":"net"}', "/n")
    assert back.cni_args == [["A", "1"]] and back.capability_args == {"mac": "x"} and back.result == RESULT
    assert cnicache.read(str(tmp_path), "net", "cid", "eth9") is None


def test_reads_a_file_written_by_go(tmp_path: Path) -> None:
    # Shape of a file written by libcni (podman 4.3, CNI backend), trimmed.
    config = b'{"cniVersion":"0.4.0","name":"gonet","plugins":[{"type":"bridge"}]}'
    text = ('{"kind":"cniCacheV1","containerId":"2f3a","config":"' + base64.b64encode(config).decode() +
            '","ifName":"eth0","networkName":"gonet","netns":"/run/netns/netns-1",'
            '"cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAMESPACE","c"]],'
            '"capabilityArgs":{"aliases":{"gonet":["c"]},"portMappings":[]},'
            '"result":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.121.98.2/24"}]}}')
    d = tmp_path / "results"
    d.mkdir()
    (d / "gonet-2f3a-eth0").write_text(text)
    att = cnicache.read(str(tmp_path), "gonet", "2f3a", "eth0")
    assert att is not None and att.config == config and att.netns == "/run/netns/netns-1"
    assert att.cni_args == [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "c"]]
    assert [a.container_id for a in cnicache.list_attachments(str(tmp_path), "gonet")] == ["2f3a"]


def test_legacy_raw_result(tmp_path: Path) -> None:
    d = tmp_path / "results"
    d.mkdir()
    (d / "old-cid-eth0").write_text(json.dumps(RESULT))
    att = cnicache.read(str(tmp_path), "old", "cid", "eth0")
    assert att is not None and att.result == RESULT and att.config == b""
    # a legacy file says nothing about its attachment: not listed
    assert cnicache.list_attachments(str(tmp_path)) == []


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b"\x00\x00", b'{"kind":"cniCacheV1","config":"!!"}',
                                     b'{"kind":"cniCacheV1","config":"","result":[1]}'])
def test_corrupt_files(tmp_path: Path, content: bytes) -> None:
    d = tmp_path / "results"
    d.mkdir()
    (d / "n-c-eth0").write_bytes(content)
    with pytest.raises(CacheError, match="corrupt cache file"):
        cnicache.read(str(tmp_path), "n", "c", "eth0")
    assert cnicache.list_attachments(str(tmp_path)) == []
    assert cnicache.corrupt_files(str(tmp_path)) == [d / "n-c-eth0"]


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cnicache.write(str(tmp_path), _att(result=RESULT))
    before = cnicache.cache_path(str(tmp_path), "net", "cid", "eth0").read_bytes()

    def crash(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CacheError, match="No space left"):
        cnicache.write(str(tmp_path), _att(result={"cniVersion": "1.0.0"}))
    monkeypatch.undo()
    # the old file is intact and no temporary file is left behind
    assert cnicache.cache_path(str(tmp_path), "net", "cid", "eth0").read_bytes() == before
    assert os.listdir(tmp_path / "results") == ["net-cid-eth0"]


def test_temp_files_are_not_attachments(tmp_path: Path) -> None:
    cnicache.write(str(tmp_path), _att())
    (tmp_path / "results" / ".tmp-abc").write_text("{")
    assert [a.container_id for a in cnicache.list_attachments(str(tmp_path))] == ["cid"]


def test_list_filters_by_network_name_not_prefix(tmp_path: Path) -> None:
    cnicache.write(str(tmp_path), _att(network_name="a"))
    cnicache.write(str(tmp_path), _att(network_name="a-b", container_id="x"))
    assert [a.network_name for a in cnicache.list_attachments(str(tmp_path), "a")] == ["a"]
    # sorted by file name, as libcni lists them: "a-b-x-eth0" < "a-cid-eth0"
    assert [a.network_name for a in cnicache.list_attachments(str(tmp_path))] == ["a-b", "a"]


def test_cni_cache_dir_env(monkeypatch: pytest.MonkeyPatch, core: CoreEnv) -> None:
    monkeypatch.delenv("CNI_CACHE_DIR", raising=False)
    assert cnicache.default_cache_dir() == "/var/lib/cni"
    monkeypatch.setenv("CNI_CACHE_DIR", str(core.cache))
    assert cnicache.default_cache_dir() == str(core.cache)
    from cnirun.cni.runtime import CNI

    assert CNI().cache_dir == str(core.cache)


def test_cache_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(CacheError, match="CNI_CACHE_DIR"):
        cnicache.check_writable(str(f))
    with pytest.raises(CacheError, match="CNI_CACHE_DIR"):
        cnicache.write(str(f), _att())


# -- the cache as the runtime uses it ----------------------------------------


def test_add_writes_cache_only_on_success_and_del_removes_it(core: CoreEnv) -> None:
    core.conflist("c1", [core.noop_plugin("a", capabilities={"portMappings": True})])
    core.debug("a", reportResult=RESULT)
    cni = core.cni()
    rt = core.rt(args=[("IgnoreUnknown", "1")], capability_args={"portMappings": [], "other": 1})
    cni.add(cni.network("c1"), rt)
    assert core.cache_files() == ["c1-ctr1-eth0"]
    att = cnicache.read(str(core.cache), "c1", "ctr1", "eth0")
    assert att is not None
    assert att.config == (core.netconf / "c1.conflist").read_bytes()
    assert att.netns == str(core.netns_file)
    assert att.cni_args == [["IgnoreUnknown", "1"]]
    assert att.capability_args == {"portMappings": [], "other": 1}  # all of them, as libcni stores
    assert att.result == RESULT
    cni.delete("c1", core.rt())
    assert core.cache_files() == []


def test_failed_add_leaves_no_cache(core: CoreEnv) -> None:
    core.conflist("c2", [core.noop_plugin("a"), core.noop_plugin("b")])
    core.debug("a", reportResult=RESULT)
    core.debug("b", reportError="nope")
    cni = core.cni()
    with pytest.raises(Exception):
        cni.add(cni.network("c2"), core.rt())
    assert core.cache_files() == []
