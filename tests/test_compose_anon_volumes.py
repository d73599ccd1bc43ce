"""The record of anonymous volumes kept across a recreate (cnirun.compose.anon_volumes): what up writes
before the old container goes, what the next up or down -v reads back; engine-free."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnirun.compose import anon_volumes
from cnirun.compose.mounts import forget
from cnirun.core.errors import ConfigError

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNIRUN_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_the_newest_unsettled_record_per_container_wins(state: Path) -> None:
    anon_volumes.remember("p", "p-db-1", {"/data": A})
    anon_volumes.remember("p", "p-web-1", {"/x": B})
    anon_volumes.settled("p", "p-web-1")
    anon_volumes.remember("p", "p-db-1", {"/data": C})
    assert anon_volumes.remembered("p") == {"p-db-1": {"/data": C}}
    assert anon_volumes.remembered("other") == {}
    record = state / "compose" / "p" / anon_volumes.RECORD
    assert record.stat().st_mode & 0o777 == 0o600 and (state / "compose" / "p").stat().st_mode & 0o777 == 0o700


def test_a_torn_or_foreign_line_is_skipped(state: Path) -> None:
    anon_volumes.remember("p", "p-db-1", {"/data": A})
    record = state / "compose" / "p" / anon_volumes.RECORD
    with open(record, "a") as f:  # a kill inside a write, then lines nobody wrote
        f.write('{"container": "p-web-1", "volu')
    anon_volumes.remember("p", "p-web-1", {"/y": B})
    with open(record, "a") as f:
        f.write('[1]\n{"container": 5, "volumes": {}}\n{"container": "x", "volumes": {"/etc": "/etc"}}\n'
                '{"container": "y", "volumes": {"/v": "myvolume"}}\nnot json\n\x00\xff\n' + "[" * 100_000 + "\n")
    assert anon_volumes.remembered("p") == {"p-db-1": {"/data": A}, "p-web-1": {"/y": B}}


def test_a_planted_symlink_is_refused_not_followed(state: Path, tmp_path: Path) -> None:
    anon_volumes.remember("p", "p-db-1", {"/data": A})
    record = state / "compose" / "p" / anon_volumes.RECORD
    record.unlink()
    target = tmp_path / "elsewhere"
    target.write_text("")
    record.symlink_to(target)
    with pytest.raises(ConfigError, match="symlink or not a file"):
        anon_volumes.remember("p", "p-db-1", {"/data": A})
    assert target.read_text() == "" and anon_volumes.remembered("p") == {}
    record.unlink()
    os.link(target, record)  # a hard link to a file elsewhere
    with pytest.raises(ConfigError, match="not a file cnirun wrote"):
        anon_volumes.remember("p", "p-db-1", {"/data": A})
    assert target.read_text() == ""


def test_a_planted_project_dir_is_no_record_and_up_refuses_it(state: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (state / "compose").mkdir(parents=True)
    (state / "compose" / "p").symlink_to(elsewhere)
    assert anon_volumes.remembered("p") == {}
    with pytest.raises(ConfigError, match="symlink or not a directory"):
        anon_volumes.remember("p", "p-db-1", {"/data": A})
    assert list(elsewhere.iterdir()) == []


def test_container_names_are_only_keys(state: Path) -> None:
    """A compose file names the containers: whatever the name, it is a JSON key and never a path."""
    names = ["../../etc/x", "a\nb", "x" * 100_000, "\x00", '"}{"container": "evil"']
    for name in names:
        anon_volumes.remember("p", name, {"/data": A})
    assert sorted(anon_volumes.remembered("p")) == sorted(names)
    assert os.listdir(state / "compose" / "p") == [anon_volumes.RECORD]


def test_forget_keeps_the_record_when_asked(state: Path) -> None:
    anon_volumes.remember("p", "p-db-1", {"/data": A})
    (state / "compose" / "p" / "secrets").mkdir()
    (state / "compose" / "p" / "secrets" / "s").write_text("x")
    forget("p", keep=anon_volumes.RECORD)
    assert os.listdir(state / "compose" / "p") == [anon_volumes.RECORD]
    assert anon_volumes.remembered("p") == {"p-db-1": {"/data": A}}
    forget("p")
    assert not (state / "compose" / "p").exists()
    forget("p", keep=anon_volumes.RECORD)  # nothing there: nothing to do


def test_recorded_takes_what_the_engine_still_has_where_the_service_mounts_anonymously() -> None:
    class Eng:
        def volume_labels(self, name: str) -> dict[str, str] | None:
            return {} if name != C else None

    taken, others = anon_volumes.recorded(Eng(), {"/data": A, "/cache": B, "/gone": C}, ["/data", "named:/cache"])
    assert taken == {"/data": A} and others == {B}
