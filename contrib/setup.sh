#!/usr/bin/env bash
# Set up vmcorefs on a Debian 12 machine (as root, or with sudo available):
# the system packages FUSE and the tests need, a virtualenv in .venv, and the
# package itself (with the test extra when called as "setup.sh test").
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

want=(fuse3 libfuse3-dev pkg-config gcc binutils)
if [ "${1:-}" = test ]; then
    # the real dump consumers of tests/test_t6_consumers.py: gdb-multiarch,
    # eu-readelf (elfutils), vmcore-dmesg (kexec-tools), libkdumpfile for
    # /usr/bin/python3, qemu-s390x (qemu-user) for the s390x makedumpfile/crash
    want+=(gdb-multiarch zstd elfutils kexec-tools qemu-user python3-libkdumpfile)
    # the guests of tests/guest.py: qemu-system-s390x boots ../shared/guest's
    # kernel, the cross compiler builds the static /init (contrib/fixtures/init.c)
    want+=(qemu-system-misc gcc-s390x-linux-gnu libc6-dev-s390x-cross)
    # python-lzo (the lzo codec of kdump-compressed dumps) builds against it
    want+=(liblzo2-dev)
    # the Debian s390x userland of contrib/guest/run-scenario.py (tests/test_t8_s390x.py):
    # ../shared/guest/make-userland.sh packs it with mksquashfs and checks its
    # busybox links (absolute, /bin/busybox) against this host's busybox;
    # mke2fs and debugfs make and read the dump disk
    want+=(squashfs-tools busybox e2fsprogs)
fi
missing=()
for p in "${want[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        $sudo apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev >/dev/null
        "$python" -m venv .venv
    fi
fi
extra=""
[ "${1:-}" = test ] && extra="[test]"
if ! .venv/bin/python -I -c "import vmcorefs, pyfuse3, trio, elftools" 2>/dev/null; then
    echo "setup: installing vmcorefs and its Python packages into .venv (pip; about a minute the first time)" >&2
fi
# pipefail: pip's failure fails the pipeline; grep finding nothing to print does not
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra}" 2>&1 \
    | { grep -v -e "^WARNING: Location" -e "^$" || true; } >&2 \
    || { echo "setup: pip install failed" >&2; exit 1; }
# -I: not from the current directory, but as installed
.venv/bin/python -I -c "import vmcorefs, pyfuse3, trio, elftools" \
    || { echo "setup: the Python packages did not install" >&2; exit 1; }

if [ "${1:-}" = test ]; then
    # Debian's s390x makedumpfile and crash (+ libraries) unpacked into a
    # sysroot for qemu-s390x; a no-op once built
    bash contrib/s390x-sysroot.sh >/dev/null
fi
