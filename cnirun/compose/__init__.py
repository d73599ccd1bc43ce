"""Compose projects: `cnirun compose up/down/config/...` over `cnirun run`'s runner.

Reading a project: project (the file, merged by merge, interpolated by
interpolate), services (one service's keys), mounts (volumes, secrets,
configs), durations; render prints it (`config`). Running it: up and down
in steps over labels (compose's names and labels), request (a service's
`cnirun run` request), images, networks (from cnirun.netstore), volumes,
containers, dependencies (depends_on's conditions), peers (hosts files),
logs and messages; commands holds ps, logs, exec, stop, start, restart,
pull and build. PyYAML is imported only by the functions that parse files,
never at package import, so `import cnirun.compose` stays cheap.
"""
