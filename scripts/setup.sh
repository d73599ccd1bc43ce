#!/usr/bin/env bash
# Prepare a Debian 12 machine to build, run and test cnirun.  Every step is
# idempotent: when there is nothing to do it says so and returns quickly.
#
#   scripts/setup.sh [STEP...]        (no step = all steps, in this order)
#
#   packages      apt-get install the system packages that are missing
#   venv          .venv with python3.11, `pip install -e '.[test]'`,
#                 /usr/local/bin/{cnirun,cnirun-hook,cnirun-shim} symlinks
#   docker        start dockerd (no systemd here) unless `docker info` works
#   podman        make `podman run` work without CAP_SYS_RESOURCE (ulimits)
#   image         offline busybox:latest in docker and podman (scripts/mkimage.sh)
#   image-docker  ... in docker only
#   image-podman  ... in podman only
#
# Environment: PYTHON (interpreter for the venv; default python3.11, else
# python3 if it is >= 3.11).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.venv
STAMP=$VENV/.cnirun-installed        # newer than pyproject.toml = up to date
APT_PACKAGES=(docker.io podman containernetworking-plugins busybox-static iproute2 iptables nftables jq etcd-server dnsmasq-base iperf3 catatonit slirp4netns uidmap)
ENTRY_POINTS=(cnirun cnirun-hook cnirun-shim)
BIN_DIR=/usr/local/bin
DOCKERD_LOG=/var/log/cnirun-dockerd.log
DOCKERD_WAIT=${CNIRUN_DOCKERD_WAIT:-30}   # seconds
PODMAN_DROPIN=/etc/containers/containers.conf.d/50-cnirun-ulimits.conf

say() { printf 'cnirun setup: %s\n' "$*"; }
die() { printf 'cnirun setup: error: %s\n' "$*" >&2; exit 1; }

SUDO=
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 && SUDO=sudo
fi

# ---------------------------------------------------------------- packages
apt_install() {  # pkg...  (installs only what dpkg says is missing)
    local missing=() p status
    for p in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        say "packages already installed ($*)"
        return 0
    fi
    say "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    $SUDO apt-get update -q >/dev/null || die "apt-get update failed"
    $SUDO apt-get install -y -q "${missing[@]}" || die "apt-get install ${missing[*]} failed"
}

step_packages() { apt_install "${APT_PACKAGES[@]}"; }

# -------------------------------------------------------------------- venv
pick_python() {
    local py
    if [[ -n ${PYTHON:-} ]]; then
        command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON not found"
        echo "$PYTHON"; return
    fi
    for py in python3.11 python3; do
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$py"; return
        fi
    done
    die "no python >= 3.11 found (set PYTHON=/path/to/python3.11)"
}

step_venv() {
    local py fresh=0 reason
    if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
        py=$(pick_python)
        # Debian's own python3.11 ships without ensurepip (python3.11-venv).
        if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
            apt_install python3-venv "python$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
        fi
        say "creating .venv with $py ($("$py" -c 'import sys; print(sys.version.split()[0])'))"
        rm -rf "$VENV"
        "$py" -m venv "$VENV" || die "python -m venv failed"
        fresh=1
    fi
    if ((fresh)) || [[ ! -e $STAMP ]]; then
        reason="new venv"
    elif [[ $REPO/pyproject.toml -nt $STAMP ]]; then
        reason="pyproject.toml changed"
    elif [[ -e $VENV/lib/python3.11/site-packages/__editable___cnirun_0_1_0_finder.py ]]; then
        reason="switching to the lighter editable install"
    else
        reason=
    fi
    if [[ -n $reason ]]; then
        say "pip install -e '.[test]' into .venv ($reason)"
        local t0=$SECONDS
        # editable_mode=compat: a plain path entry in a .pth file, whatever the
        # setuptools (pyproject's package-dir gives it in the default mode too),
        # not the import-hook finder site.py would load in every process (~13 ms
        # of each cnirun, hook and shim start).
        (cd "$REPO" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
            --config-settings editable_mode=compat -e '.[test]') \
            || die "pip install -e '.[test]' failed"
        # pip byte-compiles what it installs, but not an editable source tree.
        "$VENV/bin/python" -m compileall -q "$REPO/cnirun" >/dev/null || true
        touch "$STAMP"
        say "pip install done in $((SECONDS - t0)) s"
    else
        say ".venv up to date (pyproject.toml unchanged)"
    fi
    shared_interpreter
    lean_launchers
    link_entry_points
}

# Whether every user can run PATH: the file and each directory above it are
# world-executable (pyenv's interpreters under /root are not).
world_runnable() {
    local p
    p=$(readlink -f "$1") || return 1
    [[ -x $p ]] || return 1
    while [[ -n $p && $p != / ]]; do
        [[ $(( 0$(stat -c %a "$p") & 1 )) -eq 1 ]] || return 1
        p=${p%/*}
    done
    return 0
}

# cnirun is for every user (rootless networks), so the venv must run on an
# interpreter they can all execute. A venv made on one only root can run is
# repointed in place at the same Python version elsewhere on the machine
# (Debian's /usr/bin/python3.11): the installed packages stay, pip included.
shared_interpreter() {
    local cur want py ver
    cur=$(sed -n 's/^executable = //p' "$VENV/pyvenv.cfg" 2>/dev/null)
    [[ -n $cur ]] || cur=$(readlink -f "$VENV/bin/python")
    world_runnable "$cur" && return 0
    if [[ -n ${PYTHON:-} ]]; then
        say "warning: PYTHON=$PYTHON: only root can run it, so non-root users cannot run cnirun"
        return 0
    fi
    ver=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    for py in "/usr/bin/python$ver" "/usr/local/bin/python$ver"; do
        if world_runnable "$py" && "$py" -c 'import venv' 2>/dev/null; then
            want=$py
            break
        fi
    done
    if [[ -z ${want:-} ]]; then
        say "warning: only root can run the venv's interpreter ($cur) and no other Python $ver is installed for all users: non-root users cannot run cnirun"
        return 0
    fi
    say "repointing .venv from $cur (only root can run it) to $want"
    rm -f "$VENV"/bin/python "$VENV"/bin/python3 "$VENV/bin/python$ver"
    if "$want" -m venv --upgrade --without-pip "$VENV" &&
        "$VENV/bin/python" -c 'import cnirun, typer, yaml, pyroute2, docker' 2>/dev/null; then
        return 0
    fi
    # Put the venv back on its own interpreter: root's cnirun keeps working.
    rm -f "$VENV"/bin/python "$VENV"/bin/python3 "$VENV/bin/python$ver"
    "$cur" -m venv --upgrade --without-pip "$VENV" || die "cannot put .venv back on $cur"
    say "warning: .venv on $want cannot import cnirun's dependencies: kept on $cur (non-root users cannot run cnirun)"
}

# pip installs cnirun's launcher (bin/cnirun, pyproject.toml's script-files) as
# cnirun, cnirun-hook and cnirun-shim, with the venv's Python on the first line.
# -S there skips site and the .pth files' imports (setuptools' distutils hack
# among them): ~1 ms of every start. The launcher then puts the venv's
# site-packages and the paths its .pth files name (this checkout) on sys.path
# itself, in the order site would.
lean_launchers() {
    local name file shebang="#!$VENV/bin/python -S"
    for name in "${ENTRY_POINTS[@]}"; do
        file=$VENV/bin/$name
        [[ -f $file ]] && grep -q 'sys.flags.no_site' "$file" || continue
        [[ $(head -n 1 "$file") == "$shebang" ]] && continue
        { echo "$shebang"; tail -n +2 "$file"; } > "$file.tmp" && chmod 755 "$file.tmp" && mv "$file.tmp" "$file"
    done
}

link_entry_points() {
    local name target link changed=()
    for name in "${ENTRY_POINTS[@]}"; do
        target=$VENV/bin/$name
        link=$BIN_DIR/$name
        [[ -L $link && $(readlink "$link") == "$target" ]] && continue
        if [[ -e $link && ! -L $link ]]; then
            say "warning: $link exists and is not a symlink; leaving it alone"
            continue
        fi
        if ! $SUDO ln -sfn "$target" "$link" 2>/dev/null; then
            say "warning: cannot write $link; use $target directly"
            continue
        fi
        changed+=("$name")
    done
    if ((${#changed[@]})); then
        say "linked ${changed[*]} in $BIN_DIR -> .venv/bin"
    else
        say "$BIN_DIR/{$(IFS=,; echo "${ENTRY_POINTS[*]}")} already point to .venv/bin"
    fi
}

# ------------------------------------------------------------------ docker
step_docker() {
    command -v docker >/dev/null 2>&1 || die "docker CLI not found (run: scripts/setup.sh packages)"
    if docker info >/dev/null 2>&1; then
        say "dockerd already running"
        return 0
    fi
    command -v dockerd >/dev/null 2>&1 || die "dockerd not found (apt-get install docker.io)"
    local pid
    if pid=$(pgrep -xo dockerd); then
        say "dockerd (pid $pid) running but not answering yet; waiting up to ${DOCKERD_WAIT} s"
    else
        say "starting dockerd (log: $DOCKERD_LOG)"
        # No systemd/init here: run it detached (own session, so it outlives
        # this shell, make and the terminal).
        # 9>&-: do not let dockerd inherit (and hold forever) the setup lock.
        $SUDO setsid nohup dockerd </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
        pid=$!
    fi
    local i why="did not answer \`docker info\` within ${DOCKERD_WAIT} s"
    for ((i = 0; i < DOCKERD_WAIT * 2; i++)); do
        docker info >/dev/null 2>&1 && { say "dockerd is up"; return 0; }
        if ! kill -0 "$pid" 2>/dev/null && ! pgrep -x dockerd >/dev/null; then
            why="exited during start-up"
            break
        fi
        sleep 0.5
    done
    {
        echo "cnirun setup: error: dockerd $why."
        echo "  last lines of $DOCKERD_LOG:"
        tail -n 15 "$DOCKERD_LOG" 2>/dev/null | sed 's/^/    /'
    } >&2
    exit 1
}

# ------------------------------------------------------------------ podman
# On this VM (no CAP_SYS_RESOURCE) runc cannot raise RLIMIT_NOFILE/NPROC to
# podman's defaults, and every `podman run` fails with
#   error setting rlimits for ready process: error setting rlimit type 7:
#   operation not permitted
# The fix is the equivalent of `--ulimit nofile=1024:1024 --ulimit
# nproc=1024:1024` as default_ulimits in containers.conf.  Podman 4.3
# (containers/common 0.50) reads drop-ins from
# /etc/containers/containers.conf.d/*.conf after /usr/share/containers/
# containers.conf and /etc/containers/containers.conf (verified here; the main
# /etc file need not exist), so we add a drop-in and edit no packaged file.
# Note: drop-ins are ignored when CONTAINERS_CONF is set in the environment.
podman_probe() { podman run --rm --network none busybox true 2>&1; }

step_podman() {
    command -v podman >/dev/null 2>&1 || die "podman not found (run: scripts/setup.sh packages)"
    # The probe needs the image; build it offline first if absent.
    "$REPO/scripts/mkimage.sh" podman
    local out
    if out=$(podman_probe); then
        if [[ -e $PODMAN_DROPIN ]]; then
            say "podman runs containers (ulimits from $PODMAN_DROPIN)"
        else
            say "podman runs containers (no ulimit drop-in needed)"
        fi
        return 0
    fi
    if ! grep -qi 'rlimit' <<<"$out"; then
        die "podman run --rm --network none busybox true failed (not the ulimit problem):
$out"
    fi
    if [[ -e $PODMAN_DROPIN ]]; then
        die "podman still fails with the ulimit error although $PODMAN_DROPIN exists
(is CONTAINERS_CONF set?):
$out"
    fi
    say "podman cannot set rlimits here (no CAP_SYS_RESOURCE): writing $PODMAN_DROPIN"
    $SUDO mkdir -p "$(dirname "$PODMAN_DROPIN")"
    printf '%s\n' \
        '# Written by cnirun scripts/setup.sh: this machine lacks CAP_SYS_RESOURCE,' \
        '# so runc cannot apply podman'"'"'s default rlimits. Same as' \
        '# --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 on every podman run.' \
        '[containers]' \
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]' \
        | $SUDO tee "$PODMAN_DROPIN" >/dev/null
    out=$(podman_probe) || die "podman still fails after writing $PODMAN_DROPIN:
$out"
    say "podman runs containers now"
}

# ------------------------------------------------------------------- image
step_image() { "$REPO/scripts/mkimage.sh" "$@"; }

# -------------------------------------------------------------------- main
ALL_STEPS=(packages venv docker podman image)
steps=("$@")
((${#steps[@]})) || steps=("${ALL_STEPS[@]}")
for s in "${steps[@]}"; do
    case $s in
        packages|venv|docker|podman|image|image-docker|image-podman) ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) die "unknown step '$s' (steps: ${ALL_STEPS[*]} image-docker image-podman)" ;;
    esac
done

# Several people (and CI jobs) share this tree and machine: serialize setups.
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/cnirun-setup.lock"
    if ! flock -n 9; then
        say "another setup is running; waiting for it"
        flock 9
    fi
fi

start=$(date +%s.%N)
for s in "${steps[@]}"; do
    case $s in
        packages) step_packages ;;
        venv) step_venv ;;
        docker) step_docker ;;
        podman) step_podman ;;
        image) step_image docker podman ;;
        image-docker) step_image docker ;;
        image-podman) step_image podman ;;
    esac
done
say "done: ${steps[*]} ($(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
