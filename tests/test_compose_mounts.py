"""What a service mounts (cnirun.compose.mounts), on real engines: secrets and configs with uid/gid/mode.

Address plan: CNIRUN_SUBNET_POOL 10.247.0.0/16, projects c26ixxxxxx. Each test owns its NETCONFPATH,
cache and IPAM dirs and checks that `down -v` left nothing (the copies `up` wrote included).
"""
from __future__ import annotations

import subprocess

from test_compose_commands import Proj
from test_compose_lifecycle import SLEEP_WITH_INIT
from test_compose_recreate import proj  # noqa: F401 - the project fixture of this address plan


def test_secret_and_config_uid_gid_mode_are_the_files_owner_and_mode(proj: Proj) -> None:
    """A secret from a file and one from environment:, and a config, mounted with uid/gid/mode: the container
    sees each with that owner and mode and the source's text; the plain mount of the same secret is the
    user's file as it is; down -v leaves nothing."""
    (proj.dir / "pw.txt").write_text("from-file\n")
    (proj.dir / "pw.txt").chmod(0o640)
    proj.write(f"""
services:
  app:
    image: busybox
    command: {SLEEP_WITH_INIT}
    secrets:
      - pw
      - {{source: pw, target: owned, uid: "1000", gid: "1001", mode: 0440}}
      - {{source: tok, uid: "33", mode: "0600"}}
    configs: [{{source: motd, target: /etc/motd, uid: "7", gid: "8"}}]
secrets:
  pw: {{file: ./pw.txt}}
  tok: {{environment: C26I_TOKEN}}
configs:
  motd: {{content: hello}}
""")
    proj.env["C26I_TOKEN"] = "from-env"
    proj.cnirun("up", "-d")
    stat = "stat -c '%n %u %g %a' /run/secrets/pw /run/secrets/owned /run/secrets/tok /etc/motd"
    shown = subprocess.run([proj.cli, "exec", proj.c("app"), "sh", "-c", stat], capture_output=True, text=True)
    assert shown.stdout.splitlines() == ["/run/secrets/pw 0 0 640", "/run/secrets/owned 1000 1001 440",
                                         "/run/secrets/tok 33 0 600", "/etc/motd 7 8 444"], shown.stderr
    cat = subprocess.run([proj.cli, "exec", proj.c("app"), "cat", "/run/secrets/owned", "/run/secrets/tok",
                          "/etc/motd"], capture_output=True, text=True)
    assert cat.stdout == "from-file\nfrom-envhello"
    proj.cnirun("down", "-v")
    proj.assert_clean()


def test_missing_bind_sources_are_made_by_up(proj: Proj) -> None:
    """A bind source that does not exist, in short syntax and in long syntax (bind.create_host_path left
    true), is made a directory by up, as dockerd does, on Podman too (podman run refuses a missing one); the
    container writes through it; down -v leaves nothing."""
    proj.write(f"""
services:
  app:
    image: busybox
    command: {SLEEP_WITH_INIT}
    volumes:
      - ./made/short:/short
      - {{type: bind, source: ./made/long, target: /long}}
""")
    proj.cnirun("up", "-d")
    assert (proj.dir / "made" / "short").is_dir() and (proj.dir / "made" / "long").is_dir()
    wrote = subprocess.run([proj.cli, "exec", proj.c("app"), "sh", "-c", "echo s > /short/f; echo l > /long/f"],
                           capture_output=True, text=True)
    assert wrote.returncode == 0, wrote.stderr
    assert (proj.dir / "made" / "short" / "f").read_text() == "s\n"
    assert (proj.dir / "made" / "long" / "f").read_text() == "l\n"
    proj.cnirun("down", "-v")
    proj.assert_clean()
