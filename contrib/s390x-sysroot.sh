#!/usr/bin/env bash
# Build a sysroot with Debian's s390x builds of makedumpfile, crash and
# s390-tools' zgetdump (plus the shared libraries they need) and install
# qemu-user, so that the real s390x dump tools run on this (x86_64) Debian 12
# machine:
#
#     qemu-s390x -L SYSROOT SYSROOT/usr/bin/makedumpfile -d 31 -c /mnt/vmcore out
#     qemu-s390x -L SYSROOT SYSROOT/usr/bin/crash vmlinux /mnt/vmcore
#     qemu-s390x -L SYSROOT SYSROOT/sbin/zgetdump -i /mnt/vmcore
#
# Usage: contrib/s390x-sysroot.sh [--refresh] [SYSROOT]
#   SYSROOT defaults to $VMCOREFS_S390X_SYSROOT, else /var/tmp/vmcorefs-s390x-sysroot.
#   Prints the sysroot's path on success.
#
# As root (or with sudo). Steps: install qemu-user on the host,
# dpkg --add-architecture s390x, apt-get update, resolve the runtime library
# dependencies of makedumpfile:s390x and crash:s390x (every Depends /
# Pre-Depends, recursively, that is a "Multi-Arch: same" library package; tools
# such as perl or binutils that the packages also depend on are not needed by
# the binaries) plus s390-tools:s390x and libfuse2:s390x for zgetdump, apt-get
# download them and dpkg-deb -x each into SYSROOT.
# Nothing is installed for s390x on the host.
#
# Idempotent: a stamp file in SYSROOT records the packages it holds; when it
# is there and the tools start under qemu-s390x, nothing else is done (no
# apt at all, a fraction of a second). --refresh re-resolves the package
# versions and rebuilds the sysroot if any changed.
set -euo pipefail

refresh=0
if [ "${1:-}" = --refresh ]; then refresh=1; shift; fi
sysroot=${1:-${VMCOREFS_S390X_SYSROOT:-/var/tmp/vmcorefs-s390x-sysroot}}
while [ ${#sysroot} -gt 1 ] && [ "${sysroot%/}" != "$sysroot" ]; do sysroot=${sysroot%/}; done
tools=(makedumpfile crash)
# packages taken as they are, without their dependencies: s390-tools is
# wanted for zgetdump alone, which needs only libc, zlib (both already there
# for makedumpfile) and libfuse2; the package's other tools would pull in
# some 80 packages (curl, ncurses, perl, ...)
bare=(s390-tools libfuse2)
arch=s390x
format="# vmcorefs s390x sysroot 2: ${tools[*]} + ${bare[*]}"
stamp="$sysroot/.vmcorefs-sysroot"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
log() { echo "s390x-sysroot: $*" >&2; }
tmp="" new="" cand=""
trap 'rm -rf ${tmp:+"$tmp"} ${new:+"$new"} ${cand:+"$cand"}' EXIT

tools_run() {
    command -v qemu-s390x >/dev/null 2>&1 \
        && qemu-s390x -L "$1" "$1/usr/bin/makedumpfile" -v >/dev/null 2>&1 \
        && qemu-s390x -L "$1" "$1/usr/bin/crash" --version >/dev/null 2>&1 \
        && qemu-s390x -L "$1" "$1/sbin/zgetdump" -v >/dev/null 2>&1
}

if [ $refresh = 0 ] && [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$format" ] && tools_run "$sysroot"; then
    log "$sysroot is ready"
    echo "$sysroot"
    exit 0
fi
# the sysroot is replaced as a whole: never a directory this script did not make
if [ -e "$sysroot" ] && [ ! -f "$stamp" ] && [ -n "$(ls -A "$sysroot" 2>&1)" ]; then
    log "$sysroot exists and is no sysroot of this script (no $stamp): remove it yourself, or give another path"
    exit 1
fi

# 1. qemu-user on the host (provides /usr/bin/qemu-s390x; no binfmt_misc
#    needed: the tools are started through qemu-s390x explicitly)
if ! command -v qemu-s390x >/dev/null 2>&1; then
    log "installing qemu-user"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
fi

# 2. the s390x package lists
if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    log "dpkg --add-architecture $arch; apt-get update"
    $sudo dpkg --add-architecture "$arch"
    $sudo apt-get update -qq
elif [ $refresh = 1 ] || ! apt-cache show --no-all-versions "${tools[0]}:$arch" >/dev/null 2>&1; then
    $sudo apt-get update -qq
fi

# 3. resolve: the tools plus, recursively, the Multi-Arch: same libraries they
#    depend on. One apt-cache call per dependency level (each call costs about
#    a second where apt keeps no binary cache, as in Debian's docker images).

# "name version multiarch" of each named package's candidate version
describe() {
    apt-cache show --no-all-versions "$@" 2>/dev/null | awk '
        /^Package:/ {p = $2; v = ""; m = "no"}
        /^Version:/ {v = $2}
        /^Multi-Arch:/ {m = $2}
        /^$/ && p != "" {print p, v, m; p = ""}
        END {if (p != "") print p, v, m}'
}
# the first alternative of each Depends/Pre-Depends of the named packages
# (a virtual package: its first provider), without the architecture qualifier
depends() {
    apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances "$@" | awk '
        /^[^ ]/ {alt = 0; prov = 0; next}
        /^ [ |](Pre)?Depends:/ {
            prov = 0
            if (!alt) {
                if ($2 ~ /^</) prov = 1; else print $2
            }
            alt = ($1 ~ /^\|/)
            next
        }
        /^    [^ ]/ && prov {print $1; prov = 0}' | sed 's/:.*//' | sort -u
}

declare -A have=()
want=""
frontier=()
while read -r p v m; do
    [ -n "$p" ] || continue
    have[$p]=1
    want+="$p:$arch=$v"$'\n'
    frontier+=("$p:$arch")
done < <(describe "${tools[@]/%/:$arch}")
[ ${#frontier[@]} -eq ${#tools[@]} ] || { log "apt knows no s390x build of some of: ${tools[*]}"; exit 1; }
while [ ${#frontier[@]} -gt 0 ]; do
    new=()
    while read -r d; do
        [ -n "$d" ] && [ -z "${have[$d]:-}" ] && new+=("$d:$arch")
    done < <(depends "${frontier[@]}")
    frontier=()
    [ ${#new[@]} -gt 0 ] || break
    while read -r p v m; do
        have[$p]=1
        [ "$m" = same ] || continue
        want+="$p:$arch=$v"$'\n'
        frontier+=("$p:$arch")
    done < <(describe "${new[@]}")
done
while read -r p v m; do
    [ -n "$p" ] && [ -z "${have[$p]:-}" ] && want+="$p:$arch=$v"$'\n'
done < <(describe "${bare[@]/%/:$arch}")
count=$(printf '%s' "$want" | grep -c .)

# 4. download and unpack, unless the sysroot already holds exactly these versions
#    (the stamp, byte for byte: $(cat) would drop its last newline)
cand=$(mktemp "${TMPDIR:-/tmp}/vmcorefs-s390x-stamp.XXXXXX")
printf '%s\n%s' "$format" "$want" > "$cand"
if [ -f "$stamp" ] && cmp -s "$cand" "$stamp" && tools_run "$sysroot"; then
    log "$sysroot is up to date ($count packages)"
else
    log "building $sysroot from $count packages: $(printf '%s' "$want" | tr '\n' ' ')"
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmcorefs-s390x-debs.XXXXXX")
    chmod 755 "$tmp"   # lets apt-get download fetch as _apt
    # shellcheck disable=SC2046
    (cd "$tmp" && apt-get download -q=2 $(printf '%s' "$want") 2>&1 \
        | { grep -v "unsandboxed as root" || true; } >&2)
    n=$(find "$tmp" -maxdepth 1 -name '*.deb' | wc -l)
    [ "$n" -eq "$count" ] || { log "downloaded $n of $count packages"; exit 1; }
    mkdir -p "$(dirname "$sysroot")"
    new=$(mktemp -d "$sysroot.new.XXXXXX")   # beside it, so that mv renames
    chmod 755 "$new"
    for deb in "$tmp"/*.deb; do
        dpkg-deb -x "$deb" "$new"
    done
    cp "$cand" "$new/.vmcorefs-sysroot"
    chmod 644 "$new/.vmcorefs-sysroot"
    # checked above: no sysroot yet, an empty directory, or one this script made
    rm -rf "$sysroot"
    mv "$new" "$sysroot"
    new=""
fi

# 5. check that the tools start under qemu
tools_run "$sysroot" || { log "makedumpfile, crash or zgetdump does not start under qemu-s390x -L $sysroot"; exit 1; }
echo "$sysroot"
