"""Where a compose project comes from, as docker compose finds it: its files, its project
directory and the variables its files are interpolated with.

- Files: the -f files (relative to the current directory; `-` is standard input), else
  COMPOSE_FILE (split on COMPOSE_PATH_SEPARATOR, default ':'), else the first of DEFAULT_FILES
  in the current directory or, failing that, in the nearest parent holding one, with the first
  of OVERRIDE_FILES beside it merged over it.
- Project directory: --project-directory, else the first named file's directory (the current
  one when the only file is standard input). Relative paths in every -f file resolve against
  it, its `.env` is read and its name is the default project name.
- Variables: the environment over the env files: --env-file (repeatable, later files over
  earlier ones; a missing one is an error), else COMPOSE_ENV_FILES (comma-separated), else the
  project directory's `.env` unless COMPOSE_DISABLE_ENV_FILE is true. Without -f, COMPOSE_FILE
  may come from the env files of the current directory (or --project-directory), as compose
  reads them before it looks for the files.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import ConfigError
from .interpolate import Variables

STDIN = "-"  # the -f value that names standard input
# compose-go's names, in its order of preference.
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml",
                  "docker-compose.override.yaml")
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


class Sources:
    """The files (paths; standard input's is PROJECT_DIR/-), the project directory, the
    variables, and warnings about the lookup (several default files in one directory)."""

    def __init__(self, files: list[Path], workdir: Path, variables: Variables, stdin: bool,
                 warnings: list[str]) -> None:
        self.files, self.workdir, self.variables, self.stdin, self.warnings = files, workdir, variables, stdin, warnings

    @property
    def stdin_path(self) -> Path:
        return self.workdir / STDIN


def locate(files: list[str], environ: dict[str, str], project_directory: str | None = None,
           env_files: list[str] | None = None) -> Sources:
    """The project's files, directory and variables from the -f files, --project-directory,
    --env-file and the environment (see the module docstring)."""
    if files.count(STDIN) > 1:
        raise ConfigError("-f - given more than once: standard input holds one compose file")
    explicit = _project_directory(project_directory)
    warnings: list[str] = []
    if not files:
        early = _variables(environ, _env_files(env_files, environ, explicit or Path.cwd()))
        files = _compose_file(early) or _default_files(explicit or Path.cwd(), warnings)
    workdir = explicit or next((_absolute(f).parent for f in files if f != STDIN), None) or Path.cwd()
    variables = _variables(environ, _env_files(env_files, environ, workdir))
    paths = [workdir / STDIN if f == STDIN else Path(f) for f in files]
    return Sources(paths, workdir, variables, STDIN in files, warnings)


def _absolute(path: str) -> Path:
    """`path` against the current directory, `..` and `.` folded (compose's filepath.Abs)."""
    return Path(os.path.abspath(path))


def _project_directory(given: str | None) -> Path | None:
    if given is None:
        return None
    path = _absolute(given)
    if not path.is_dir():
        raise ConfigError(f"--project-directory {given}: not a directory")
    return path


def _compose_file(variables: Variables) -> list[str]:
    """COMPOSE_FILE's paths, made absolute against the current directory (empty entries dropped)."""
    listed = variables.get("COMPOSE_FILE")
    if not listed:
        return []
    sep = variables.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    return [f if f == STDIN else str(_absolute(f)) for f in listed.split(sep) if f]


def _default_files(start: Path, warnings: list[str]) -> list[str]:
    """The first default file of `start` or its nearest parent holding one, and its override."""
    for directory in (start, *start.parents):
        found = [directory / n for n in DEFAULT_FILES if (directory / n).is_file()]
        if not found:
            continue
        overrides = [directory / n for n in OVERRIDE_FILES if (directory / n).is_file()]
        for kind, names in (("compose files", found), ("override files", overrides)):
            if len(names) > 1:
                warnings.append(f"found several {kind} in {directory}: {', '.join(p.name for p in names)}; "
                                f"using {names[0].name}")
        return [str(found[0])] + [str(p) for p in overrides[:1]]
    raise ConfigError(f"no compose file in {start} or its parents: expected one of {', '.join(DEFAULT_FILES)}, "
                      "or pass -f FILE")


def _env_files(given: list[str] | None, environ: dict[str, str], workdir: Path) -> list[tuple[str, Path]]:
    """(what named it, path) of each env file to read, in order."""
    if given:
        return [("--env-file", _absolute(f)) for f in given]
    listed = environ.get("COMPOSE_ENV_FILES")
    if listed:
        return [("COMPOSE_ENV_FILES", _absolute(f.strip())) for f in listed.split(",") if f.strip()]
    disable = environ.get("COMPOSE_DISABLE_ENV_FILE")
    if disable is not None and disable not in _TRUE | _FALSE:
        raise ConfigError(f"COMPOSE_DISABLE_ENV_FILE={disable[:40]!r}: expected true or false (1 or 0)")
    dotenv = workdir / ".env"
    return [] if disable in _TRUE or not dotenv.is_file() else [(".env", dotenv)]


def _variables(environ: dict[str, str], files: list[tuple[str, Path]]) -> Variables:
    """The environment over the env files' values, a later file's over an earlier one's."""
    from .envfile import read_env_file

    base = Variables(environ)
    values: dict[str, str] = {}
    for named_by, path in files:
        if not path.is_file():
            raise ConfigError(f"{named_by} {path}: {'not a regular file' if path.exists() else 'no such file'}")
        values.update(read_env_file(path, base.over(values)))
    return base.over(values)
