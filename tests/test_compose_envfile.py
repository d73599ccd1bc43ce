"""cnirun/compose/envfile.py: the `.env` format as docker compose reads it, for a project's `.env` and a
service's `env_file:` (docs.docker.com/compose/environment-variables/env-file/ and compose-go's dotenv
cases). Engine-free: the parser in-process, and `cnirun compose config` (which starts nothing)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import CNIRUN_BIN

from cnirun.compose.envfile import parse_env
from cnirun.compose.interpolate import Variables
from cnirun.netstore.located import ComposeError

# (a line of an env file, the key it sets, the value compose gives it)
DOCUMENTED = [
    # plain values; spaces around the key and '=' ignored; '=' in the value kept
    ("VAR=VAL", "VAR", "VAL"),
    ("VAR = VAL", "VAR", "VAL"),
    ("  \tVAR=VAL", "VAR", "VAL"),
    ("VAR=a=b=", "VAR", "a=b="),
    ("VAR=", "VAR", ""),
    ("VAR.WITH.DOTS-AND-DASHES=x", "VAR.WITH.DOTS-AND-DASHES", "x"),
    ("VAR: yaml style", "VAR", "yaml style"),
    ("VAR=1:B", "VAR", "1:B"),
    # quotes
    ('VAR="VAL"', "VAR", "VAL"),
    ("VAR='VAL'", "VAR", "VAL"),
    ('VAR=""', "VAR", ""),
    ("VAR=''", "VAR", ""),
    ("VAR=\"it's\"", "VAR", "it's"),
    ("VAR='say \"hi\"'", "VAR", 'say "hi"'),
    # inline comments: unquoted values need a space before '#'; quoted ones end at the closing quote
    ("VAR=VAL # comment", "VAR", "VAL"),
    ("VAR=VAL #comment", "VAR", "VAL"),
    ("VAR=VAL #", "VAR", "VAL"),
    ("VAR=VAL# not a comment", "VAR", "VAL# not a comment"),
    ("VPN_SERVER_URL=x.dyndns.com # free examples: x.dyndns.com, y.no-ip.org", "VPN_SERVER_URL", "x.dyndns.com"),
    ('VAR="VAL # not a comment"', "VAR", "VAL # not a comment"),
    ('VAR="VAL" # comment', "VAR", "VAL"),
    ('VAR="a#b"#', "VAR", "a#b"),
    ("VAR='a#b' # comment", "VAR", "a#b"),
    ("VAR=VAL   ", "VAR", "VAL"),
    # escapes: a quote escaped in its own quotes; the shell's escapes in double quotes only
    ("VAR='Let\\'s go!'", "VAR", "Let's go!"),
    ('VAR="{\\"hello\\": \\"json\\"}"', "VAR", '{"hello": "json"}'),
    ('VAR="some\\tvalue"', "VAR", "some\tvalue"),
    ("VAR='some\\tvalue'", "VAR", "some\\tvalue"),
    ("VAR=some\\tvalue", "VAR", "some\\tvalue"),
    ('VAR="a\\nb\\rc\\\\d"', "VAR", "a\nb\rc\\d"),
    ('VAR="\\a\\b\\f\\v"', "VAR", "\a\b\f\v"),
    ('VAR="\\0123"', "VAR", "S"),
    ('VAR="\\x07 \\u12e4 \\q"', "VAR", "\\x07 \\u12e4 \\q"),
    ('VAR="ends in a backslash\\\\"', "VAR", "ends in a backslash\\"),
    # export, as a shell script would write it
    ("export VAR=2", "VAR", "2"),
    ("export\tVAR=2", "VAR", "2"),
    ("  export VAR='\\n'", "VAR", "\\n"),
    ('export VAR="export A"', "VAR", "export A"),
    ("exportVAR=2", "exportVAR", "2"),
    ("export_VAR =2", "export_VAR", "2"),
    ("export=1", "export", "1"),
    # CRLF line ends; a UTF-8 byte order mark
    ("VAR=VAL\r\nNEXT=1\r\n", "VAR", "VAL"),
    ("VAR='VAL'\r\n", "VAR", "VAL"),
    ("\ufeffVAR=VAL", "VAR", "VAL"),
]


@pytest.mark.parametrize("line,key,value", DOCUMENTED)
def test_documented_lines(line: str, key: str, value: str) -> None:
    """Each documented line of the format gives the key compose gives it the value compose gives it."""
    assert parse_env(line, "t.env", Variables({}))[key] == value


def test_comments_blank_lines_and_multiline_values() -> None:
    """`#` lines and blank lines are skipped; quoted values span lines (single: literal; double: escapes and
    variables expanded); the values of a CRLF file carry no CR."""
    text = ("# a comment\n\n   # an indented comment\nA=1\n"
            "CERT='-----BEGIN-----\nMIIB $A\n-----END-----'\n"
            "MSG=\"first ${A}\nsecond\\tline\"\n"
            "B=2 # after the multi-line values\n")
    got = parse_env(text, "t.env", Variables({}))
    assert got == {"A": "1", "CERT": "-----BEGIN-----\nMIIB $A\n-----END-----", "MSG": "first 1\nsecond\tline",
                   "B": "2"}
    crlf = parse_env("A=1\r\n# c\r\n\r\nB = two words \r\nC=\"x\"\r\n", "t.env", Variables({}))
    assert crlf == {"A": "1", "B": "two words", "C": "x"}


def test_interpolation_reads_the_environment_then_the_lines_above() -> None:
    """Unquoted and double-quoted values are interpolated, from the environment first and then from the
    file's own earlier values; single-quoted ones, `$$` and `\\$` stay literal; defaults apply."""
    text = ("HOST=file-host\nURL=http://${HOST}:${PORT:-80}/\nQ=\"$HOST/$PORT\"\nS='${HOST}'\n"
            "D=$$HOST\nE=\"\\$HOST\"\nN=${NOPE:-${HOST}}\n")
    got = parse_env(text, "t.env", Variables({"HOST": "env-host"}))
    assert got["URL"] == "http://env-host:80/" and got["Q"] == "env-host/"
    assert got["S"] == "${HOST}" and got["D"] == "$HOST" and got["E"] == "$HOST" and got["N"] == "env-host"
    own = parse_env("HOST=file-host\nURL=${HOST}\n", "t.env", Variables({}))
    assert own["URL"] == "file-host"


def test_key_alone_takes_the_environment() -> None:
    """`KEY` without `=` (also `export KEY`, also on the last line) takes KEY's value from the environment
    and is left out when the environment does not set it."""
    values = Variables({"FROM_ENV": "yes", "LAST": "z"})
    got = parse_env("FROM_ENV\nNOT_SET\nexport X=1\nLAST", "t.env", values)
    assert got == {"FROM_ENV": "yes", "X": "1", "LAST": "z"}


def test_unset_variables_are_noted_once() -> None:
    """A variable used without a default and set nowhere is noted once, in the order met; one with a
    default, or `$$`, is not."""
    values = Variables({})
    parse_env("A=${NOPE}\nB=$NOPE\nC=${OTHER}\nD=${DEF:-d}\nE=$$LIT\nF=${PLUS:+x}\n", "t.env", values)
    assert values.unset == ["NOPE", "OTHER"]


@pytest.mark.parametrize("text,line,words", [
    ('A=1\nB="never closed\nC=3\n', 2, "unterminated quoted value"),
    ("A=1\n\nB='never closed", 3, "unterminated quoted value"),
    ("A B=1\n", 1, "holds a space"),
    ("A=1\nB!=2\n", 2, "unexpected character '!'"),
    ("A=1\n$(rm -rf /)=2\n", 2, "unexpected character '$'"),
    ("A=1\nB=x\0y\n", 2, "NUL"),
    ("A=1\nB=${C:?C must be set}\n", 2, "required variable C is missing a value: C must be set"),
    ("A=${\n", 1, "invalid interpolation"),
    ("A=1\nB=\"${C\"\n", 2, "invalid interpolation"),
])
def test_malformed_is_one_located_line(text: str, line: int, words: str) -> None:
    """A malformed file is one ComposeError line naming the file, the line and what is wrong."""
    with pytest.raises(ComposeError) as e:
        parse_env(text, "bad.env", Variables({}))
    msg = str(e.value)
    assert msg.startswith(f"bad.env:{line}: ") and words in msg and "\n" not in msg, msg


# -- through the CLI: a project's .env and a service's env_file ------------------------------------------------

def _config(cwd: Path, *args: str, env: dict[str, str] | None = None,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(["prlimit", "--as=1073741824", "--", CNIRUN_BIN, "compose", *args, "config",
                           "--format", "json"], cwd=cwd, env={**environ, **(env or {})}, input=stdin,
                          capture_output=True, timeout=60)


def test_project_env_and_env_file_through_compose_config(tmp_path: Path) -> None:
    """`compose config`: the project's `.env` is read by compose's rules (inline comment cut, quotes,
    export) and loses to the environment; an env_file interpolates from the project's variables, then the
    service's `environment:`, then its own lines, and `environment:` wins over it."""
    (tmp_path / ".env").write_text("export IMAGE=busybox # the image\nVPN_SERVER_URL=x.dyndns.com # free\n"
                                   "GREETING=\"hello\\tworld\"\nWHO=dotenv\n")
    (tmp_path / "app.env").write_text("URL=https://${VPN_SERVER_URL}/ # inline\nLEVEL=${LEVEL_FROM_SVC}\n"
                                      "SELF=${URL}x\nOVERRIDDEN=from-file\nWHO_FILE=$WHO\n")
    (tmp_path / "compose.yaml").write_text("""\
services:
  app:
    image: ${IMAGE}
    env_file: [app.env]
    environment:
      GREETING: ${GREETING}
      LEVEL_FROM_SVC: debug
      OVERRIDDEN: from-environment
""")
    p = _config(tmp_path, env={"WHO": "shell"})
    assert p.returncode == 0, p.stderr
    app = json.loads(p.stdout)["services"]["app"]
    assert app["image"] == "busybox"
    assert app["environment"] == {"URL": "https://x.dyndns.com/", "LEVEL": "debug", "SELF": "https://x.dyndns.com/x",
                                  "OVERRIDDEN": "from-environment", "WHO_FILE": "shell",
                                  "GREETING": "hello\tworld", "LEVEL_FROM_SVC": "debug"}
    assert p.stderr == b""


def test_raw_env_file_is_taken_as_written(tmp_path: Path) -> None:
    """`env_file: {path, format: raw}` reads docker run --env-file's lines: quotes, `#` after a value and
    `$` kept as written, `#` lines skipped, KEY alone from the environment, CRLF's CR dropped; a name with a
    blank is one located line; another format is refused."""
    (tmp_path / "raw.env").write_bytes(b'# comment\r\nQUOTED="as is" # kept\r\nDOLLAR=$HOME ${X}\r\n'
                                       b"  INDENTED=1\r\nFROM_ENV\r\nNOT_SET\r\n")
    (tmp_path / "compose.yaml").write_text("services:\n  app:\n    image: busybox\n"
                                           "    env_file: [{path: raw.env, format: raw}]\n")
    p = _config(tmp_path, env={"FROM_ENV": "yes"})
    assert p.returncode == 0, p.stderr
    environment = json.loads(p.stdout)["services"]["app"]["environment"]
    environment["DOLLAR"] = environment["DOLLAR"].replace("$$", "$")  # `config` may print a $ as $$
    assert environment == {"QUOTED": '"as is" # kept', "DOLLAR": "$HOME ${X}", "INDENTED": "1", "FROM_ENV": "yes"}
    (tmp_path / "raw.env").write_text("A=1\nB C=2\n")
    err = _config(tmp_path).stderr.decode()
    assert err.startswith(f"cnirun: {tmp_path / 'raw.env'}:2: invalid line 'B C=2'") and err.count("\n") == 1, err
    (tmp_path / "compose.yaml").write_text("services:\n  app:\n    image: busybox\n"
                                           "    env_file: [{path: raw.env, format: yaml}]\n")
    err = _config(tmp_path).stderr.decode()
    assert "env_file[0].format: unsupported env_file format 'yaml'" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("which", [".env", "app.env"])
def test_malformed_env_file_is_one_cli_line(tmp_path: Path, which: str) -> None:
    """A malformed `.env` or env_file ends `compose config` with one `cnirun: FILE:LINE: ...` line."""
    (tmp_path / "compose.yaml").write_text("services:\n  app: {image: busybox, env_file: [app.env]}\n")
    (tmp_path / "app.env").write_text("A=1\n")
    (tmp_path / which).write_text("A=1\nB='open\n")
    p = _config(tmp_path)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.startswith("cnirun: ") and err.count("\n") == 1, err
    assert f"{tmp_path / which}:2: unterminated quoted value" in err


# -- fuzz: whatever the bytes, one line or a result, quickly ----------------------------------------------------

def _fuzz_texts(seed: int, n: int) -> list[str]:
    """Random env-file texts (fixed seed): the format's own characters mixed with random ones, and edits of
    a valid file."""
    rnd = random.Random(seed)
    alphabet = list("AB_.=:#'\"\\$ {}-+?\t\n\r\0x1") + ["export ", "${A", ":-", "\\n", "\u00e9", "\ufeff"]
    base = "A=1\nexport B='two'\nC=\"x ${A} \\t\"\nD=${NOPE:-d} # c\nE\n"
    out = []
    for _ in range(n):
        if rnd.random() < 0.5:
            out.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 80))))
        else:
            t = list(base)
            for _ in range(rnd.randint(1, 4)):
                t.insert(rnd.randrange(len(t) + 1), rnd.choice(alphabet))
            out.append("".join(t))
    return out


def test_fuzz_parser_in_process() -> None:
    """3000 random texts (seeded), huge lines, deep and unclosed interpolations: the parser returns a
    mapping or raises one ComposeError line, never anything else, each within 2 s."""
    hostile = [
        "A=" + "x" * (1 << 20), "A=\"" + "x" * (1 << 20), "A" * (1 << 20), "#" * (1 << 20),
        "A=" + "${" * 200_000, "A=" + "${A:-" * 50_000 + "}" * 50_000, "A=" + "$A" * 300_000,
        "A=" + "${A}" * 200_000, "\n" * (1 << 20) + "B='", "A='" + "\\'" * 300_000,
    ]
    for text in _fuzz_texts(11, 3000) + hostile:
        t = time.monotonic()
        try:
            got = parse_env(text, "f.env", Variables({"A": "a"}))
            assert isinstance(got, dict)
        except ComposeError as e:
            assert str(e).startswith("f.env:") and "\n" not in str(e), repr(str(e)[:200])
        assert time.monotonic() - t < 2, repr(text[:80])


def test_fuzz_env_files_through_the_cli(tmp_path: Path) -> None:
    """Random bytes (seeded), NUL, non-UTF-8, unterminated quotes, a line over the 1 MiB bound, as a
    project's `.env`: `compose config` exits 0 or with one `cnirun: ` line, never a traceback, within 20 s
    in 1 GiB."""
    rnd = random.Random(5)
    cases = [t.encode("utf-8", "surrogatepass") for t in _fuzz_texts(7, 28)]
    cases += [bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 300))) for _ in range(8)]
    cases += [b"A=\x00\n", b"A=caf\xe9\n", b"A='open\n", b'A="open', b"A=" + b"x" * (2 << 20),
              b"A=${NOPE:?the reason}\n", b"A=" + b"${A:-" * 1000 + b"}" * 1000]
    (tmp_path / "compose.yaml").write_text("services:\n  app: {image: busybox}\n")

    def one(i: int) -> tuple[int, subprocess.CompletedProcess[bytes], float]:
        d = tmp_path / f"c{i}"
        d.mkdir()
        (d / "compose.yaml").write_text("services:\n  app: {image: busybox}\n")
        (d / ".env").write_bytes(cases[i])
        t = time.monotonic()
        return i, _config(d), time.monotonic() - t

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(len(cases))))
    refused = 0
    for i, p, dt in results:
        err = p.stderr.decode("utf-8", "replace")
        assert "Traceback" not in err and dt < 20, (cases[i][:100], err[:500])
        if p.returncode != 0:
            refused += 1
            lines = [ln for ln in err.splitlines() if not ln.startswith("WARN[0000] ")]
            assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("cnirun: "), (cases[i][:100], err)
    assert refused >= 7  # the last seven at least are wrong for certain
