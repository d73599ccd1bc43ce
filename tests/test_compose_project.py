"""How a compose project is found and loaded (cnirun/compose/project.py, cnirun/compose/sources.py,
cnirun/cli/compose_cmd.py's global options), as docker compose v2 does it: --env-file,
COMPOSE_ENV_FILES, COMPOSE_DISABLE_ENV_FILE, --project-directory, COMPOSE_FILE with
COMPOSE_PATH_SEPARATOR, compose.yaml looked up here and in the parents with its override merged,
relative paths of every -f file against the project directory, the project name's precedence and
COMPOSE_PROFILES. Engine-free: `compose config` starts nothing."""
from __future__ import annotations

import json
import os
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import CNIRUN_BIN

WEB = """\
services:
  web:
    image: busybox
    environment: {X: "${X:-unset}", Y: "${Y:-unset}", Z: "${Z:-unset}"}
"""


def _compose(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    environ.update(env)
    return subprocess.run(["prlimit", "--as=1073741824", "--", CNIRUN_BIN, "compose", *args], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=60)


def _config(cwd: Path, *args: str, **env: str) -> dict[str, Any]:
    p = _compose(cwd, *args, "config", "--format", "json", **env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _one_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in p.stderr.splitlines() if not ln.startswith(("WARN ", "WARN[0000] "))]
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("cnirun: "), (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    return lines[0]


def _env(out: dict[str, Any], service: str = "web") -> dict[str, str]:
    return out["services"][service]["environment"]


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    d = tmp_path / "c26hproj"
    d.mkdir()
    (d / "compose.yaml").write_text(WEB)
    (d / ".env").write_text("X=dotenv\nZ=dotenv\n")
    return d


def test_env_files_replace_dotenv(proj: Path) -> None:
    """--env-file (repeatable, relative to the current directory): read in order, a later file's value
    over an earlier one's, the project's .env not read; the environment still wins over them."""
    (proj / "one.env").write_text("X=one\nY=one\n")
    (proj / "sub").mkdir()
    (proj / "sub" / "two.env").write_text("Y=two\n")
    out = _config(proj, "--env-file", "one.env", "--env-file", "sub/two.env")
    assert _env(out) == {"X": "one", "Y": "two", "Z": "unset"}
    assert _env(_config(proj, "--env-file", "one.env", X="shell")) == {"X": "shell", "Y": "one", "Z": "unset"}
    assert _env(_config(proj)) == {"X": "dotenv", "Y": "unset", "Z": "dotenv"}


def test_compose_env_files_and_disable_env_file(proj: Path) -> None:
    """COMPOSE_ENV_FILES (comma-separated) stands for --env-file; COMPOSE_DISABLE_ENV_FILE=1 or true skips
    .env (0 or false reads it); another value is one line, exit 1."""
    (proj / "one.env").write_text("X=one\n")
    (proj / "two.env").write_text("Y=two\n")
    assert _env(_config(proj, COMPOSE_ENV_FILES="one.env, two.env")) == {"X": "one", "Y": "two", "Z": "unset"}
    for off in ("1", "true"):
        assert _env(_config(proj, COMPOSE_DISABLE_ENV_FILE=off)) == {"X": "unset", "Y": "unset", "Z": "unset"}
    assert _env(_config(proj, COMPOSE_DISABLE_ENV_FILE="0"))["X"] == "dotenv"
    err = _one_line(_compose(proj, "config", COMPOSE_DISABLE_ENV_FILE="maybe"))
    assert "COMPOSE_DISABLE_ENV_FILE" in err


def test_missing_env_file_is_one_line(proj: Path) -> None:
    """A missing --env-file (or COMPOSE_ENV_FILES entry), or a directory named as one: one line naming it,
    exit 1, nothing printed on stdout."""
    (proj / "adir").mkdir()
    cases = [(("--env-file", "nope.env"), {}, f"--env-file {proj}/nope.env: no such file"),
             (("--env-file", "adir"), {}, f"--env-file {proj}/adir: not a regular file"),
             ((), {"COMPOSE_ENV_FILES": "gone.env"}, f"COMPOSE_ENV_FILES {proj}/gone.env: no such file")]
    for args, env, words in cases:
        p = _compose(proj, *args, "config", **env)
        assert words in _one_line(p) and p.stdout == ""


def test_project_directory(proj: Path, tmp_path: Path) -> None:
    """--project-directory DIR: relative paths of the files, the .env read and the default project name are
    DIR's, not the file's directory; a DIR that is not a directory is one line, exit 1."""
    other = tmp_path / "c26hother"
    other.mkdir()
    (other / ".env").write_text("X=other\n")
    (proj / "compose.yaml").write_text(WEB + "    volumes: ['./data:/data']\n    build: ./ctx\n")
    out = _config(tmp_path, "-f", "c26hproj/compose.yaml", "--project-directory", "c26hother")
    assert out["name"] == "c26hother" and _env(out) == {"X": "other", "Y": "unset", "Z": "unset"}
    web = out["services"]["web"]
    assert web["volumes"] == [f"{other}/data:/data"] and web["build"]["context"] == f"{other}/ctx"
    default = _config(tmp_path, "-f", "c26hproj/compose.yaml")
    assert default["name"] == "c26hproj" and default["services"]["web"]["volumes"] == [f"{proj}/data:/data"]
    err = _one_line(_compose(tmp_path, "-f", "c26hproj/compose.yaml", "--project-directory", "nowhere", "config"))
    assert "--project-directory nowhere: not a directory" in err


def test_compose_file_variable(proj: Path, tmp_path: Path) -> None:
    """COMPOSE_FILE names the files when no -f is given, split on ':' or on COMPOSE_PATH_SEPARATOR, relative
    to the current directory, from the environment or the current directory's .env; -f wins over it."""
    (proj / "extra.yaml").write_text("services:\n  extra: {image: busybox}\n")
    both = "c26hproj/compose.yaml:c26hproj/extra.yaml"
    assert sorted(_config(tmp_path, COMPOSE_FILE=both)["services"]) == ["extra", "web"]
    semi = both.replace(":", ";")
    assert sorted(_config(tmp_path, COMPOSE_FILE=semi, COMPOSE_PATH_SEPARATOR=";")["services"]) == ["extra", "web"]
    (tmp_path / ".env").write_text(f"COMPOSE_FILE={both}\n")
    out = _config(tmp_path)
    assert sorted(out["services"]) == ["extra", "web"] and out["name"] == "c26hproj"
    assert _env(out)["X"] == "dotenv"  # the variables are the project directory's .env
    assert sorted(_config(tmp_path, "-f", "c26hproj/extra.yaml")["services"]) == ["extra"]


def test_default_file_looked_up_in_parents_with_its_override(tmp_path: Path) -> None:
    """Without -f or COMPOSE_FILE: the default file of the current directory or its nearest parent, the
    override file beside it merged over it; that directory is the project's (name, .env, paths).
    docker-compose.yml is preferred to docker-compose.yaml; compose.yaml to both, with a warning."""
    top = tmp_path / "c26hup"
    deep = top / "a" / "b"
    deep.mkdir(parents=True)
    (top / "docker-compose.yaml").write_text("services:\n  never: {image: busybox}\n")
    (top / "docker-compose.yml").write_text(WEB + "    volumes: ['./data:/data']\n")
    (top / "docker-compose.override.yml").write_text("services:\n  web:\n    labels: {over: 'yes'}\n")
    (top / ".env").write_text("X=top\n")
    out = _config(deep)
    web = out["services"]["web"]
    assert out["name"] == "c26hup" and list(out["services"]) == ["web"]
    assert web["labels"] == {"over": "yes"} and web["volumes"] == [f"{top}/data:/data"]
    assert _env(out)["X"] == "top"
    (top / "compose.yaml").write_text("services:\n  preferred: {image: busybox}\n  web: {image: busybox}\n")
    p = _compose(deep, "config", "--services")
    assert p.returncode == 0 and p.stdout.split() == ["preferred", "web"], p.stderr
    assert "compose.yaml, docker-compose.yml, docker-compose.yaml; using compose.yaml" in p.stderr


def test_no_compose_file_is_one_line(tmp_path: Path) -> None:
    """No default file here or above: one line naming the directory, exit 1."""
    start = tmp_path / "c26hnone"
    start.mkdir()
    names = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
    if any((d / n).is_file() for d in start.parents for n in names):
        pytest.skip("a parent of the test's directory holds a compose file")
    assert f"no compose file in {start} or its parents" in _one_line(_compose(start, "config"))


def test_relative_paths_resolve_against_the_first_files_directory(tmp_path: Path) -> None:
    """An override file in another directory: its bind sources, build context, env_file, secret file and
    extends file resolve against the project directory (the first file's); the paths of the file an
    extends names resolve against that file's own directory."""
    proj = tmp_path / "c26hpaths"
    (proj / "over").mkdir(parents=True)
    (proj / "lib").mkdir()
    (proj / "compose.yaml").write_text("services:\n  web: {image: busybox}\n")
    (proj / "o.env").write_text("O=project-dir\n")
    (proj / "over" / "o.env").write_text("O=override-dir\n")
    (proj / "s.txt").write_text("s\n")
    (proj / "lib" / "common.yaml").write_text("services:\n  base:\n    image: busybox\n    volumes: ['./c:/c']\n")
    (proj / "over" / "override.yaml").write_text("""\
services:
  web:
    build: .
    volumes: ["./data:/data"]
    env_file: ./o.env
    secrets: [s]
  ext:
    extends: {file: lib/common.yaml, service: base}
secrets:
  s: {file: ./s.txt}
""")
    out = _config(tmp_path, "-f", "c26hpaths/compose.yaml", "-f", "c26hpaths/over/override.yaml")
    web = out["services"]["web"]
    assert web["build"]["context"] == str(proj) and web["volumes"] == [f"{proj}/data:/data"]
    assert web["environment"] == {"O": "project-dir"}
    assert out["secrets"]["s"]["file"] == f"{proj}/s.txt"
    assert out["services"]["ext"]["volumes"] == [f"{proj}/lib/c:/c"]


def test_project_name_precedence(proj: Path) -> None:
    """-p, then COMPOSE_PROJECT_NAME (environment or .env), then the top-level name:, then the project
    directory's name, as docker compose orders them."""
    (proj / "compose.yaml").write_text("name: c26hfromfile\n" + WEB)
    assert _config(proj)["name"] == "c26hfromfile"
    assert _config(proj, COMPOSE_PROJECT_NAME="c26hfromenv")["name"] == "c26hfromenv"
    assert _config(proj, "-p", "c26hflag", COMPOSE_PROJECT_NAME="c26hfromenv")["name"] == "c26hflag"
    (proj / ".env").write_text("COMPOSE_PROJECT_NAME=c26hdotenv\n")
    assert _config(proj)["name"] == "c26hdotenv"


def test_compose_profiles(proj: Path) -> None:
    """COMPOSE_PROFILES (environment or .env, comma-separated, blanks around names ignored) enables
    profiles when no --profile is given; --profile replaces it."""
    (proj / "compose.yaml").write_text(WEB + """\
  a: {image: busybox, profiles: [pa]}
  b: {image: busybox, profiles: [pb]}
""")
    assert sorted(_config(proj, COMPOSE_PROFILES="pa, pb")["services"]) == ["a", "b", "web"]
    assert sorted(_config(proj, "--profile", "pb", COMPOSE_PROFILES="pa")["services"]) == ["b", "web"]
    (proj / ".env").write_text("COMPOSE_PROFILES=pa\n")
    assert sorted(_config(proj)["services"]) == ["a", "web"]


def test_fuzz_project_options(proj: Path) -> None:
    """Seeded random env files through --env-file and random values of --project-directory, COMPOSE_FILE,
    COMPOSE_PATH_SEPARATOR, COMPOSE_ENV_FILES and COMPOSE_DISABLE_ENV_FILE: `compose config` exits 0 or
    with one `cnirun: ` line, never a traceback, each within 20 s in 1 GiB."""
    rnd = random.Random(2026)
    pieces = ["X=1", "export Y=2", "'", '"', "#", " # c", "${", "$$", "${X:?no}", "\\", "=", "\x00", "\xe9",
              "\n", "\t", "Z", "A B=1", ":", "..", "/", "compose.yaml", ",", "-", ""]
    cases: list[tuple[list[str], dict[str, str]]] = []
    for i in range(30):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12)))
        (proj / f"f{i}.env").write_bytes(text.encode("utf-8", "surrogateescape"))
        cases.append((["--env-file", f"f{i}.env"], {}))
    values = ["", ".", "..", "-", "/", "/dev/null", "nope", "compose.yaml", "f0.env", ":", "::", ";", "a,b", "\xe9"]
    for _ in range(30):
        env = {k: rnd.choice(values) for k in ("COMPOSE_FILE", "COMPOSE_PATH_SEPARATOR", "COMPOSE_ENV_FILES",
                                                "COMPOSE_DISABLE_ENV_FILE") if rnd.random() < 0.5}
        args = ["--project-directory", rnd.choice(values)] if rnd.random() < 0.5 else []
        cases.append((args, env))

    def one(case: tuple[list[str], dict[str, str]]) -> tuple[Any, subprocess.CompletedProcess[str], float]:
        t = time.monotonic()
        p = subprocess.run(["prlimit", "--as=1073741824", "--", CNIRUN_BIN, "compose", *case[0], "config"],
                           cwd=proj, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env={**{k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}, **case[1]})
        return case, p, time.monotonic() - t

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, cases))
    refused = 0
    for case, p, dt in results:
        assert "Traceback" not in p.stderr and dt < 20, (case, p.stderr[:1000])
        if p.returncode != 0:
            refused += 1
            _one_line(p)
    assert refused >= 10
