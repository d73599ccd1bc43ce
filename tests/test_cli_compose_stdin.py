"""`cnirun compose -f -` (cnirun/cli/compose_cmd.py, cnirun/compose/project.py): the compose file read from
standard input, as docker compose reads it. Engine-free: `compose config` starts nothing."""
from __future__ import annotations

import json
import os
import pty
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import CNIRUN_BIN

FILE = b"""\
services:
  web:
    image: busybox
    environment: {FROM_DOTENV: "${DOTENV_VALUE}"}
    volumes: ["./static:/static"]
"""


def _compose(cwd: Path, *args: str, stdin: Any = None, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(["prlimit", "--as=1073741824", "--", CNIRUN_BIN, "compose", *args], cwd=cwd, env=environ,
                          stdin=stdin, input=data, capture_output=True, timeout=60)


def _one_line(p: subprocess.CompletedProcess[bytes]) -> str:
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 1 and err.startswith("cnirun: ") and err.count("\n") == 1, (p.returncode, err[:2000])
    assert "Traceback" not in err
    return err


def test_file_from_stdin_in_the_current_directory(tmp_path: Path) -> None:
    """`-f -`: the file comes from stdin; the project directory is the current one (its name the project's,
    its .env read, relative paths resolved against it), as docker compose does."""
    cwd = tmp_path / "My_Project"
    cwd.mkdir()
    (cwd / ".env").write_text("DOTENV_VALUE=from .env # comment\n")
    p = _compose(cwd, "-f", "-", "config", "--format", "json", data=FILE)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["name"] == "my_project"
    web = out["services"]["web"]
    assert web["environment"] == {"FROM_DOTENV": "from .env"}
    assert f"{cwd}/static:/static" in json.dumps(web["volumes"])


def test_stdin_mixed_with_files(tmp_path: Path) -> None:
    """`-f base.yaml -f -`: stdin's file is merged over the other in the order given; the project directory
    is the first named file's."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "base.yaml").write_text("services:\n  web:\n    image: busybox\n    labels: {a: base, b: base}\n")
    over = b"services:\n  web:\n    labels: {b: stdin}\n  extra:\n    image: busybox\n"
    p = _compose(tmp_path, "-f", str(proj / "base.yaml"), "-f", "-", "config", "--format", "json", data=over)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["name"] == "proj" and sorted(out["services"]) == ["extra", "web"]
    assert out["services"]["web"]["labels"] == {"a": "base", "b": "stdin"}
    back = _compose(tmp_path, "-f", "-", "-f", str(proj / "base.yaml"), "config", "--format", "json", data=over)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["services"]["web"]["labels"] == {"a": "base", "b": "base"}


def test_stdin_is_read_once(tmp_path: Path) -> None:
    """`-f - -f -` is refused with one line: stdin holds one file."""
    err = _one_line(_compose(tmp_path, "-f", "-", "-f", "-", "config", data=FILE))
    assert "more than once" in err


def test_a_terminal_is_not_waited_on(tmp_path: Path) -> None:
    """`-f -` with a terminal on stdin is refused with one line at once (no wait for typing)."""
    master, slave = pty.openpty()
    try:
        t = time.monotonic()
        err = _one_line(_compose(tmp_path, "-f", "-", "config", stdin=slave))
        assert "terminal" in err and time.monotonic() - t < 20
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("data,words", [
    (b"services:\n  a: {image: busybox}\n" + b"# pad\n" * 400_000, "stdin: larger than 1 MiB"),
    (b"x" * (16 << 20), "stdin: larger than 1 MiB"),
    (b"services:\n  a: [\n", "stdin:3: invalid YAML"),
    (b"services:\n  a:\n    image: caf\xe9\n", "stdin:3: not UTF-8"),
    (b"services:\n  a:\n    image: busy\x00box\n", "stdin:3: invalid YAML"),
    (b"", "stdin: no services"),
    (b"services:\n  a:\n    image: ${IMAGE:?say which}\n", "stdin:3: services.a.image: required variable IMAGE"),
    (b"services:\n  a:\n    image: busybox\n    colour: blue\n", "stdin:4: services.a"),
], ids=["over-1-MiB", "16-MiB-line", "bad-yaml", "not-utf8", "nul", "empty", "required-variable", "unknown-key"])
def test_bad_stdin_is_one_line(tmp_path: Path, data: bytes, words: str) -> None:
    """Too large (refused unread past the bound), bad YAML, not UTF-8, NUL, empty, a required variable,
    an unknown key: one `cnirun: stdin:LINE: ...` line, exit 1."""
    err = _one_line(_compose(tmp_path, "-f", "-", "config", data=data))
    assert words in err, err


def test_fuzz_stdin(tmp_path: Path) -> None:
    """Seeded random bytes and random edits of a valid file, on stdin: `compose config` exits 0 or with one
    `cnirun: ` line, never a traceback, each within 20 s in 1 GiB."""
    rnd = random.Random(26)
    specials = [b":", b"-", b"[", b"]", b"{", b"}", b"&a", b"*a", b"'", b'"', b"#", b"\t", b"\n", b"${", b"$$",
                b"\x00", b"\xff", b"!!python/none", b"  "]
    cases = [bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 400))) for _ in range(12)]
    for _ in range(28):
        data = bytearray(FILE)
        for _ in range(rnd.randint(1, 4)):
            pos = rnd.randrange(len(data) + 1)
            data[pos:pos] = rnd.choice(specials)
        cases.append(bytes(data))
    cases += [b"services:\n  a:\n    image: '" + b"x" * (900 << 10), b"x: " + b"[" * 100_000]

    def one(data: bytes) -> tuple[bytes, subprocess.CompletedProcess[bytes], float]:
        t = time.monotonic()
        return data, _compose(tmp_path, "-f", "-", "config", data=data), time.monotonic() - t

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, cases))
    refused = 0
    for data, p, dt in results:
        err = p.stderr.decode("utf-8", "replace")
        assert "Traceback" not in err and dt < 20, (data[:100], err[:1000])
        if p.returncode != 0:
            refused += 1
            lines = [ln for ln in err.splitlines() if not ln.startswith(("WARN ", "WARN[0000] "))]
            assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("cnirun: "), (data[:100], err)
    assert refused >= 14  # the random bytes and the two over the bounds at least
