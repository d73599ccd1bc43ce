"""cnirun/compose/interpolate.py: compose's variable interpolation, and the warning compose prints for a
variable that is not set. Engine-free: substitute() in-process, `cnirun compose config` (which starts
nothing)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import pytest

from conftest import CNIRUN_BIN

from cnirun.compose.interpolate import MAX_NESTING, Variables, substitute


class Refused(Exception):
    pass


def _fail(message: str) -> NoReturn:
    raise Refused(message)


ENV = {"SET": "value", "EMPTY": "", "B": "bee"}


@pytest.mark.parametrize("template,expected", [
    ("$SET ${SET} x${SET}y", "value value xvaluey"),
    ("${UNSET:-default} ${EMPTY:-default} ${SET:-default}", "default default value"),
    ("${UNSET-default} ${EMPTY-default} ${SET-default}", "default  value"),
    ("${UNSET:+alt} ${EMPTY:+alt} ${SET:+alt}", "  alt"),
    ("${UNSET+alt} ${EMPTY+alt} ${SET+alt}", " alt alt"),
    ("${EMPTY?reason}|${SET:?reason}", "|value"),
    ("${UNSET:-${B}} ${UNSET:-${ALSO_UNSET:-deep}} ${UNSET:-a}b${B}", "bee deep abbee"),
    ("${UNSET:-{literal}}", "{literal}"),
    ("$$SET $${SET} $$$$", "$SET ${SET} $$"),
    ("cost $5, $ alone, ends in $", "cost $5, $ alone, ends in $"),
    ("${UNSET:-a:-b}", "a:-b"),
    ("$SET_suffix", ""),
])
def test_substitution(template: str, expected: str) -> None:
    """Each form substitutes as compose's template package does (nested defaults, $$, a `$` that starts no
    variable left as written)."""
    assert substitute(template, Variables(ENV), _fail) == expected


@pytest.mark.parametrize("template,words", [
    ("${UNSET:?set UNSET first}", "required variable UNSET is missing a value: set UNSET first"),
    ("${EMPTY:?}", "required variable EMPTY is missing a value: set it in the environment or .env"),
    ("${UNSET?why ${B}}", "required variable UNSET is missing a value: why bee"),
    ("${UNSET:?line one\nline two}", "missing a value: line one line two"),
    ("${", "invalid interpolation"),
    ("${}", "invalid interpolation"),
    ("${ SET}", "invalid interpolation"),
    ("${SET:x}", "invalid interpolation"),
    ("${SET", "invalid interpolation"),
    ("${A:-" * (MAX_NESTING + 1) + "}" * (MAX_NESTING + 1), "nested more than"),
])
def test_refusals_are_one_line(template: str, words: str) -> None:
    """A required variable unset, a malformed `${`, defaults nested too deep: one line saying which."""
    with pytest.raises(Refused) as e:
        substitute(template, Variables(ENV), _fail)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_hostile_templates_are_quick() -> None:
    """A megabyte of unclosed `${`, of nesting, of variables: refused or substituted within 2 s each."""
    for template in ["${" * 500_000, "${A:-" * 200_000 + "}" * 200_000, "$SET" * 250_000, "${SET}" * 170_000,
                     "{" * 500_000 + "${SET}"]:
        t = time.monotonic()
        try:
            substitute(template, Variables(ENV), _fail)
        except Refused as e:
            assert "\n" not in str(e) and len(str(e)) < 400
        assert time.monotonic() - t < 2


def test_unset_names_in_first_use_order() -> None:
    """Variables.unset: the names used without a default that nothing set, once each, in the order met."""
    values = Variables(ENV)
    substitute("$ZED ${ALPHA} $ZED ${ALPHA:-x} ${BETA-} ${GAMMA:+y} $SET $EMPTY", values, _fail)
    assert values.unset == ["ZED", "ALPHA"]


def _compose(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run([CNIRUN_BIN, "compose", *args], cwd=cwd, env={**environ, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_unset_variable_warns_once_in_composes_words(tmp_path: Path) -> None:
    """`${TIMEZONE}` unset, used in two files and the `.env`: compose's warning once per variable on
    stderr, the value blank, the exit 0; a default, `$$` or a set variable warn nothing."""
    (tmp_path / ".env").write_text("FROM_DOTENV=${DOTENV_UNSET}\n")
    (tmp_path / "compose.yaml").write_text("""\
services:
  app:
    image: busybox
    environment:
      TZ: ${TIMEZONE}
      AGAIN: $TIMEZONE
      WITH_DEFAULT: ${NO_SUCH_VAR:-x}
      ESCAPED: $$NOT_A_VAR
      SET: ${T_SET}
""")
    (tmp_path / "override.yaml").write_text("services:\n  app:\n    labels: {tz: \"${TIMEZONE}\"}\n")
    p = _compose(tmp_path, "-f", "compose.yaml", "-f", "override.yaml", "config", "--format", "json",
                 env={"T_SET": "1"})
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == [
        'WARN[0000] The "DOTENV_UNSET" variable is not set. Defaulting to a blank string.',
        'WARN[0000] The "TIMEZONE" variable is not set. Defaulting to a blank string.',
    ]
    app = json.loads(p.stdout)["services"]["app"]
    assert app["environment"]["TZ"] == "" and app["environment"]["WITH_DEFAULT"] == "x"
    assert app["labels"] == {"tz": ""}


def test_required_variable_is_one_line(tmp_path: Path) -> None:
    """`${VAR:?message}` with VAR unset ends the command with one located `cnirun: ` line carrying the
    message."""
    (tmp_path / "compose.yaml").write_text("services:\n  app:\n    image: ${IMAGE:?set IMAGE to the image}\n")
    p = _compose(tmp_path, "config")
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("cnirun: ") and "compose.yaml:3: services.app.image: required variable IMAGE is " \
                                                "missing a value: set IMAGE to the image" in p.stderr
