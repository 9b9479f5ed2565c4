#!/usr/bin/env bash
# Build (once) and cache a small Debian 12 guest image with OpenZFS from Debian's
# packages, for the realzfs test suite and the demo.
#
#   build-image.sh               build if missing, print the image directory
#   build-image.sh --print-dir   only print the image directory (no root needed)
#   build-image.sh --print-mirror  only print the Debian mirror it would use
#
# The image directory is ${XDG_CACHE_HOME:-~/.cache}/zrepl-reconcile-vm/<recipe-hash>,
# where the hash covers this script (everything the guest gets is written inline
# below), so editing the recipe makes a new image and an unchanged recipe is reused.
# Under sudo, "~" is the invoking user's home and the image is handed to that user, so
# `sudo build-image.sh` once lets an ordinary user run the demo and the tests. After a
# build, images of other recipes that no build or run holds are deleted.
# It holds: disk.qcow2, vmlinuz, initrd.img, id_ed25519(.pub) (root login key),
# host_ed25519.pub (the guest's SSH host key) and manifest.txt (written last: a
# directory without it is never used).
#
# The mirror is read from the host's apt configuration at run time, so no mirror
# host name is written into the repository.
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
RECIPE_HASH=$(sha256sum "$SCRIPT_PATH" | cut -c1-16)
# Under sudo, build into the invoking user's cache (sudo resets HOME to root's).
OWNER=""
CACHE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}"
if [[ $(id -u) -eq 0 && -n "${SUDO_UID:-}" && "${SUDO_UID}" != 0 ]]; then
    OWNER="$SUDO_UID:${SUDO_GID:-$SUDO_UID}"
    if [[ -z "${XDG_CACHE_HOME:-}" ]]; then
        CACHE_HOME="$(getent passwd "$SUDO_UID" | cut -d: -f6)/.cache"
    fi
fi
CACHE_ROOT="$CACHE_HOME/zrepl-reconcile-vm"
IMAGE_DIR="$CACHE_ROOT/$RECIPE_HASH"
READY_LINE="ZREPL-RECONCILE-GUEST-READY"
DEBIAN_SUITE=bookworm
# The host's apt configuration (a variable so the tests can point it at fixtures).
HOST_APT="${ZREPL_RECONCILE_HOST_APT:-/etc/apt}"

die() { echo "build-image: error: $*" >&2; exit 1; }
log() { echo "build-image: $(date -u +%H:%M:%S) $*" >&2; }

if [[ "${1:-}" == "--print-dir" ]]; then
    echo "$IMAGE_DIR"
    exit 0
fi



require_tools() {
    local missing=() tool
    for tool in debootstrap qemu-img mkfs.ext4 ssh-keygen chroot flock sha256sum; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if (( ${#missing[@]} )); then
        die "missing tools: ${missing[*]} (apt-get install debootstrap qemu-system-x86 qemu-utils openssh-client e2fsprogs)"
    fi
}

# The first Debian (non-security) URI of the host's apt sources: deb822 first, then
# the one-line format.
host_mirror() {
    local uri=""
    if [[ -f "$HOST_APT/sources.list.d/debian.sources" ]]; then
        uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$HOST_APT/sources.list.d/debian.sources")
    fi
    if [[ -z "$uri" && -f "$HOST_APT/sources.list" ]]; then
        uri=$(awk '$1 == "deb" && $2 !~ /security/ && $0 !~ /security/ {
                   for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}
               }' "$HOST_APT/sources.list")
    fi
    [[ -n "$uri" ]] || die "cannot find a Debian mirror in $HOST_APT/sources.list.d/debian.sources or $HOST_APT/sources.list"
    echo "$uri"
}

# debootstrap fetches with wget, which only honours the proxy environment; reuse the
# host's apt proxy when the environment has none.
export_apt_proxy() {
    local proxy
    if [[ -z "${http_proxy:-}" ]]; then
        proxy=$(apt-config dump | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n1)
        if [[ -n "$proxy" && "$proxy" != "DIRECT" ]]; then
            export http_proxy="$proxy"
        fi
    fi
    if [[ -z "${https_proxy:-}" ]]; then
        proxy=$(apt-config dump | sed -n 's/^Acquire::https::Proxy "\(.*\)";$/\1/p' | head -n1)
        if [[ -n "$proxy" && "$proxy" != "DIRECT" ]]; then
            export https_proxy="$proxy"
        fi
    fi
}

# The host's Debian sources with contrib added (zfs-dkms lives in contrib).
copy_apt_sources() {
    local root=$1 f
    rm -f "$root/etc/apt/sources.list"
    mkdir -p "$root/etc/apt/sources.list.d" "$root/etc/apt/apt.conf.d"
    if [[ -f "$HOST_APT/sources.list.d/debian.sources" ]]; then
        sed -E '/^Components:/ { / contrib( |$)/! s/$/ contrib/ }' \
            "$HOST_APT/sources.list.d/debian.sources" >"$root/etc/apt/sources.list.d/debian.sources"
    fi
    if [[ -f "$HOST_APT/sources.list" ]] && grep -q '^deb ' "$HOST_APT/sources.list"; then
        sed -E '/^deb / { / contrib( |$)/! s/$/ contrib/ }' "$HOST_APT/sources.list" >"$root/etc/apt/sources.list"
    fi
    for f in "$root/etc/apt/sources.list.d/debian.sources" "$root/etc/apt/sources.list"; do
        [[ -s "$f" ]] && return 0
    done
    die "no Debian apt sources to copy into the guest"
}

copy_apt_settings() {
    local root=$1
    apt-config dump | grep -E '^Acquire::([^ ]*::)?(Proxy|Check-Valid-Until)' \
        >"$root/etc/apt/apt.conf.d/90host-settings" || true
    cat >"$root/etc/apt/apt.conf.d/91no-recommends" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
CONF
}

WORK=""
mounted=()

mount_chroot() {
    local root=$1
    mount -t proc proc "$root/proc"; mounted+=("$root/proc")
    mount -t sysfs sys "$root/sys"; mounted+=("$root/sys")
    mount --bind /dev "$root/dev"; mounted+=("$root/dev")
    mount -t devpts devpts "$root/dev/pts" -o newinstance,ptmxmode=0666 2>/dev/null && mounted+=("$root/dev/pts") || true
}

umount_chroot() {
    local i
    for (( i=${#mounted[@]}-1; i>=0; i-- )); do
        umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" || true
    done
    mounted=()
}

# Never delete a tree that still has something mounted in it (the bind-mounted /dev
# would take the host's device nodes with it).
cleanup() {
    umount_chroot
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if grep -q " $WORK/" /proc/mounts; then
            echo "build-image: leaving $WORK in place: something is still mounted inside it" >&2
        else
            rm -rf "$WORK"
        fi
    fi
}

in_chroot() {
    local root=$1; shift
    LANG=C.UTF-8 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$root" "$@"
}

install_packages() {
    local root=$1
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    # The initramfs only needs the boot disk: 6.5 MB instead of 36 MB.
    mkdir -p "$root/etc/initramfs-tools/conf.d"
    echo 'MODULES=list' >"$root/etc/initramfs-tools/conf.d/zrepl-small.conf"
    printf 'virtio_pci\nvirtio_blk\next4\n' >"$root/etc/initramfs-tools/modules"
    log "apt-get update"
    in_chroot "$root" apt-get update -q
    log "installing kernel, headers, openssh-server, python3"
    in_chroot "$root" apt-get install -y -q linux-image-amd64 linux-headers-amd64 openssh-server python3
    log "installing zfs-dkms, zfsutils-linux (DKMS builds the module for the guest kernel)"
    if ! in_chroot "$root" apt-get install -y -q zfs-dkms zfsutils-linux; then
        show_dkms_logs "$root"
        die "installing zfs-dkms/zfsutils-linux failed"
    fi
    rm -f "$root/usr/sbin/policy-rc.d"
}

show_dkms_logs() {
    local root=$1 f
    for f in "$root"/var/lib/dkms/zfs/*/build/make.log "$root"/var/lib/dkms/zfs/*/*/*/log/make.log; do
        [[ -f "$f" ]] || continue
        echo "===== DKMS log: ${f#"$root"} (last 80 lines) =====" >&2
        tail -n 80 "$f" >&2
    done
}

guest_kernel_version() {
    local root=$1 versions
    versions=$(ls "$root/lib/modules")
    [[ $(wc -w <<<"$versions") -eq 1 ]] || die "expected one guest kernel, found: $versions"
    echo "$versions"
}

check_zfs_module() {
    local root=$1 kver=$2
    if ! find "$root/lib/modules/$kver" -name 'zfs.ko*' | grep -q .; then
        show_dkms_logs "$root"
        die "zfs.ko was not built for the guest kernel $kver"
    fi
}

configure_guest() {
    local root=$1 out=$2
    echo zfsguest >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 zfsguest\n' >"$root/etc/hosts"
    echo '/dev/vda / ext4 rw,noatime,errors=remount-ro 0 1' >"$root/etc/fstab"
    # A fixed machine id: an empty one would make systemd treat every boot as a first boot.
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"; echo >>"$root/etc/machine-id"

    # zfs-load-module.service waits for udev-settle (+5 s); load the module directly.
    echo zfs >"$root/etc/modules-load.d/zfs.conf"
    in_chroot "$root" systemctl disable zfs-load-module.service zfs-import-cache.service \
        zfs-import-scan.service zfs-zed.service 2>/dev/null || true
    in_chroot "$root" systemctl mask zfs-load-module.service zfs-import-cache.service \
        zfs-import-scan.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
        fstrim.timer systemd-networkd-wait-online.service >/dev/null

    mkdir -p "$root/etc/systemd/network"
    cat >"$root/etc/systemd/network/20-wired.network" <<'CONF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
CONF
    in_chroot "$root" systemctl enable systemd-networkd.service >/dev/null

    # SSH: one ed25519 host key generated now, so the host can check it strictly on
    # the first connection; root login by a generated key only.
    rm -f "$root"/etc/ssh/ssh_host_*
    ssh-keygen -q -t ed25519 -N '' -C zfsguest -f "$root/etc/ssh/ssh_host_ed25519_key"
    cp "$root/etc/ssh/ssh_host_ed25519_key.pub" "$out/host_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C zrepl-reconcile-vm -f "$out/id_ed25519"
    install -d -m 700 "$root/root/.ssh"
    install -m 600 "$out/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
    cat >"$root/etc/ssh/sshd_config.d/zrepl-reconcile.conf" <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 64
MaxStartups 64:30:128
CONF

    # The host waits for this line on the serial console instead of probing SSH.
    cat >"$root/etc/systemd/system/guest-ready.service" <<CONF
[Unit]
Description=Announce on the serial console that sshd is up
After=ssh.service systemd-networkd.service
Wants=ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "$READY_LINE \$(uname -r)" >/dev/ttyS0'

[Install]
WantedBy=multi-user.target
CONF
    in_chroot "$root" systemctl enable ssh.service guest-ready.service >/dev/null
}

# Docs, locales, caches, build trees and kernel modules a virtio guest never loads.
strip_guest() {
    local root=$1 kver=$2 mods
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    rm -rf "$root"/usr/src/linux-headers-* "$root"/var/lib/dkms/zfs/*/build
    mods="$root/lib/modules/$kver/kernel"
    rm -rf "$mods"/sound "$mods"/net/wireless "$mods"/net/mac80211 "$mods"/net/bluetooth
    local d
    for d in gpu media net/wireless net/ethernet infiniband staging usb bluetooth iio mtd isdn \
             hid input thunderbolt video hwmon platform nfc mfd w1 leds power watchdog \
             scsi ata firewire pcmcia mmc memstick spi i2c comedi accessibility atm target \
             misc regulator pinctrl gnss fpga extcon dma ntb edac xen hyperv soundwire; do
        rm -rf "${mods:?}/drivers/$d"
    done
    in_chroot "$root" depmod -a "$kver"
    in_chroot "$root" update-initramfs -u -k "$kver"
}

make_disk() {
    local root=$1 out=$2 used_mb
    used_mb=$(du -sm "$root" | cut -f1)
    truncate -s "$(( used_mb + 2560 ))M" "$out/disk.raw"
    mkfs.ext4 -q -L root -d "$root" "$out/disk.raw"
    qemu-img convert -c -O qcow2 "$out/disk.raw" "$out/disk.qcow2"
    rm -f "$out/disk.raw"
}

# Images of other recipes (about 200 MiB each), unless a build or a running guest
# (guest.py holds the lock shared) uses them.
remove_old_images() {
    local dir name
    for dir in "$CACHE_ROOT"/*; do
        name=${dir##*/}
        [[ -d "$dir" && "$name" =~ ^[0-9a-f]{16}$ && "$name" != "$RECIPE_HASH" ]] || continue
        (
            flock -n 8 || exit 0
            rm -rf "$dir" "$CACHE_ROOT/build-$name.log"
            log "removed the image of an older recipe: $dir"
        ) 8>>"$CACHE_ROOT/.lock-$name"
    done
}

main() {
    [[ $(id -u) -eq 0 ]] || die "building the guest image needs root (debootstrap, chroot); run: sudo $SCRIPT_PATH"
    require_tools
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/.lock-$RECIPE_HASH"
    flock 9
    if [[ -f "$IMAGE_DIR/manifest.txt" ]]; then
        echo "$IMAGE_DIR"
        return 0
    fi
    local started mirror root out kver
    started=$(date +%s)
    WORK=$(mktemp -d "$CACHE_ROOT/.build-$RECIPE_HASH.XXXXXX")
    trap cleanup EXIT
    root="$WORK/root"; out="$WORK/image"
    mkdir -p "$root" "$out"

    mirror=$(host_mirror)
    export_apt_proxy
    log "debootstrap $DEBIAN_SUITE (minbase, main+contrib) from the host's mirror"
    debootstrap --variant=minbase --components=main,contrib \
        --include=systemd-sysv,udev,kmod,iproute2,procps "$DEBIAN_SUITE" "$root" "$mirror" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -n 40 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    copy_apt_sources "$root"
    copy_apt_settings "$root"

    mount_chroot "$root"
    install_packages "$root"
    kver=$(guest_kernel_version "$root")
    check_zfs_module "$root" "$kver"
    configure_guest "$root" "$out"
    strip_guest "$root" "$kver"
    local zfs_version
    zfs_version=$(in_chroot "$root" dpkg-query -W -f '${Version}' zfsutils-linux)
    umount_chroot

    cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
    cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
    log "making the ext4 image and the compressed qcow2"
    make_disk "$root" "$out"
    cat >"$out/manifest.txt" <<MANIFEST
recipe_hash=$RECIPE_HASH
kernel=$kver
zfsutils=$zfs_version
ready_line=$READY_LINE
built_seconds=$(( $(date +%s) - started ))
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
MANIFEST
    # Rename is the commit point: an interrupted build never looks finished.
    rm -rf "$IMAGE_DIR"
    if [[ -n "$OWNER" ]]; then
        chown -R "$OWNER" "$out"
        chown "$OWNER" "$CACHE_HOME" "$CACHE_ROOT" "$CACHE_ROOT/.lock-$RECIPE_HASH" 2>/dev/null || true
    fi
    mv -T "$out" "$IMAGE_DIR"
    remove_old_images
    log "image ready in $(( $(date +%s) - started )) s: $IMAGE_DIR"
    echo "$IMAGE_DIR"
}

if [[ "${1:-}" == "--print-mirror" ]]; then
    host_mirror
    exit 0
fi
if [[ -f "$IMAGE_DIR/manifest.txt" ]]; then  # built: no root needed to say where
    echo "$IMAGE_DIR"
    exit 0
fi
main "$@"
