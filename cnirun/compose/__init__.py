"""Compose projects: `cnirun compose up/down/config` over `cnirun run`'s runner.

project parses and normalises a compose file, interpolate does `${VAR:-x}`
and `.env`, up starts and stops services; networks come from cnirun.netstore.
PyYAML is imported only by the functions that parse files, never at package
import, so `import cnirun.compose` stays cheap.
"""
