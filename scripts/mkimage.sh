#!/usr/bin/env bash
# Build a minimal `busybox:latest` image OFFLINE (no registry needed) and
# import it into docker and/or podman, only where it is absent.
#
#   scripts/mkimage.sh [--force] [--tar FILE] [docker] [podman]
#
#   (no engine)   same as: docker podman
#   --force       import even if the engine already has busybox:latest
#   --tar FILE    only write the rootfs tarball to FILE (no import)
#
# The rootfs is /bin/busybox from Debian's busybox-static (checked to be a
# static binary), one symlink per applet in /bin, /etc/passwd (root, nobody),
# /etc/group, /tmp (1777) and empty /proc /sys /dev /root.  It is imported
# with CMD ["sh"] and PATH=/bin:/sbin:/usr/bin:/usr/sbin.  Podman stores it
# as localhost/busybox:latest, which `podman run busybox` resolves to.
set -euo pipefail

IMAGE=busybox:latest
BUSYBOX=${BUSYBOX:-/bin/busybox}

say() { printf 'cnirun setup: %s\n' "$*"; }
die() { printf 'cnirun setup: error: %s\n' "$*" >&2; exit 1; }

force=0
tar_out=
engines=()
while (($#)); do
    case $1 in
        --force) force=1 ;;
        --tar) tar_out=${2:?--tar needs a file name}; shift ;;
        docker|podman) engines+=("$1") ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "mkimage: unknown argument '$1' (expected docker, podman, --force, --tar FILE)" ;;
    esac
    shift
done
((${#engines[@]})) || engines=(docker podman)

have_image() {  # engine
    case $1 in
        docker) docker image inspect "$IMAGE" >/dev/null 2>&1 ;;
        podman) podman image exists "$IMAGE" >/dev/null 2>&1 ;;
    esac
}

# Which engines actually need the image?
todo=()
if [[ -z $tar_out ]]; then
    for e in "${engines[@]}"; do
        command -v "$e" >/dev/null 2>&1 || die "$e is not installed (run: scripts/setup.sh packages)"
        if ((force == 0)) && have_image "$e"; then
            say "$IMAGE already in $e"
        else
            todo+=("$e")
        fi
    done
    ((${#todo[@]})) || exit 0
fi

# --- build the rootfs tarball -------------------------------------------------
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found (apt-get install busybox-static)"
# ldd (libc-bin, always present) prints "not a dynamic executable" or
# "statically linked" for static binaries; a dynamic busybox (Debian's plain
# `busybox` package) would not run in an image without libc.
if ldd_out=$(LC_ALL=C ldd "$BUSYBOX" 2>&1) && ! grep -qE 'not a dynamic executable|statically linked' <<<"$ldd_out"; then
    die "$BUSYBOX is dynamically linked; install busybox-static (apt-get install busybox-static)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cnirun-mkimage.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,proc,sys,dev,root,tmp}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
cp "$BUSYBOX" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
n=0
while read -r applet; do
    applet=${applet##*/}
    [[ -n $applet && $applet != busybox && ! -e $root/bin/$applet ]] || continue
    ln -s busybox "$root/bin/$applet"
    n=$((n + 1))
done < <("$root/bin/busybox" --list)
[[ -e $root/bin/sh ]] || die "$BUSYBOX has no 'sh' applet"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
chmod 0644 "$root/etc/passwd" "$root/etc/group"

tarball=${tar_out:-$work/rootfs.tar}
tar -C "$root" --numeric-owner --owner=0 --group=0 --sort=name \
    --mtime='2000-01-01 00:00:00Z' -cf "$tarball" .
if [[ -n $tar_out ]]; then
    say "wrote rootfs of busybox + $n applets to $tar_out"
    exit 0
fi

# --- import --------------------------------------------------------------------
changes=(-c 'CMD ["sh"]' -c 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin')
for e in "${todo[@]}"; do
    say "building $IMAGE offline for $e (static busybox + $n applets)"
    quiet=(); [[ $e == podman ]] && quiet=(-q)   # else podman chats on stderr
    "$e" import "${quiet[@]}" "${changes[@]}" - "$IMAGE" <"$tarball" >/dev/null \
        || die "$e import of $IMAGE failed"
done
