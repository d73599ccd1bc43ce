"""The services' images: built (build:) or made present through the engine's pull, as `--pull`
and pull_policy say."""
from __future__ import annotations

import sys
from typing import Any

from ..core.errors import CNIError
from .messages import ComposeFailed, say
from .project import Project, Service


def pull_policy(svc: Service, flag: str | None) -> str:
    """The policy for one service's image: `--pull` wins over pull_policy (as in compose v2);
    compose's if_not_present, daily and weekly are `missing` here (no pull-age record is kept)."""
    policy = flag or svc.pull_policy
    return {"if_not_present": "missing", "daily": "missing", "weekly": "missing"}.get(policy, policy)


def ensure_images(project: Project, services: list[Service], eng: Any, build: bool = False,
                  pull: str | None = None, no_build: bool = False, quiet: bool = False) -> None:
    """Build what has build: (always with --build or pull_policy build, else when the image is missing;
    never with no_build: then it must exist); make the others present through the engine's pull as
    `--pull`/pull_policy says (missing: when absent; always: every time; never: refuse when absent),
    its progress on a terminal unless quiet."""
    from ..engines.images import ImageMissing, ensure_image

    for svc in services:
        policy = pull_policy(svc, pull)
        have = eng.has_image(svc.image)
        if svc.build is not None:
            # A built service's image is never pulled by up (compose's behaviour: it may not exist anywhere).
            if no_build and not have:
                raise ComposeFailed(f"service {svc.name}: image {svc.image} is missing and --no-build says not "
                                    "to build it: build it first (compose build)")
            if not no_build and (build or policy == "build" or not have):
                build_service(project, svc, eng)
            continue
        if policy == "build":
            raise ComposeFailed(f"service {svc.name}: pull_policy build needs a build: section")
        if policy == "missing" and have:
            continue
        if policy == "never" and not have:
            raise ComposeFailed(f"service {svc.name}: image {svc.image} is missing and the pull policy is never: "
                                f"pull or load it first, or use --pull missing")
        if policy == "never":
            continue
        say(f" Image {svc.image}  Pulling")
        try:
            # The one pull path `cnirun run --pull` takes; the engine's progress on a terminal only.
            ensure_image(eng.name, svc.image, "always", client=eng,
                         progress=sys.stderr if sys.stderr.isatty() and not quiet else _Quiet())
        except ImageMissing as e:
            raise ComposeFailed(f"service {svc.name}: {e}") from None
        except CNIError as e:
            raise ComposeFailed(f"service {svc.name}: cannot pull {svc.image} ({e}); build or load it first") \
                from None
        say(f" Image {svc.image}  Pulled")


class _Quiet:
    """A progress sink for pulls off a terminal (compose prints its own Pulling/Pulled lines)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def build_service(project: Project, svc: Service, eng: Any) -> None:
    b = svc.build
    assert b is not None
    say(f" Image {svc.image}  Building")
    # No compose labels on the image: every container of it (Docker's sandbox
    # helper too) would inherit them and look like a service container.
    labels = dict(b.labels)
    eng.build(b.context, b.dockerfile, svc.image, b.args, b.target, labels, b.no_cache, b.pull)
    say(f" Image {svc.image}  Built")
