#!/usr/bin/env bash
# Installs the Debian packages the lab and the tests need, only those that are missing.
# Idempotent: a machine that already has them spends ~0.1 s here.
# gcc + libc6-dev: the lab compiles a tiny clock shim for its clock-skewed BIND (lab/dns_faults.py).
set -euo pipefail
PKGS=(openssh-server openssh-client bind9 bind9-dnsutils bind9-utils iproute2 ca-certificates patch gcc libc6-dev chromium postgresql)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "error: missing Debian packages (${missing[*]}) and not root; install them with apt-get" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's openssh-server post-install may start a system sshd on 0.0.0.0:22, which would keep the
# guests' sshd from binding 127.x.y.z:22. The lab never needs the system one.
if command -v service >/dev/null 2>&1 && pgrep -f '^/usr/sbin/sshd' >/dev/null 2>&1; then
  if ss -ltn '( sport = :22 )' | grep -q '0.0.0.0:22\|\[::\]:22\|\*:22'; then
    echo "==> stopping the system sshd listening on *:22 (the lab's guests listen on 127.x.y.z:22)"
    service ssh stop >/dev/null 2>&1 || pkill -f '^/usr/sbin/sshd' || true
  fi
fi
# The guests' sshd logs users in by their Linux account. Windows' built-in "Administrator" becomes a
# second name for root (uid 0): the lab runs as root anyway, and the emulator then reads and writes the
# guests' disks without ownership games. Key authentication only (PermitRootLogin prohibit-password).
if ! getent passwd Administrator >/dev/null; then
  echo "==> adding the account 'Administrator' (uid 0) that the Windows guests' sshd logs in"
  useradd -o -u 0 -g 0 -M -d /root -s /bin/sh --badname Administrator 2>/dev/null
fi
# useradd leaves the password field "!" (locked), and sshd without PAM refuses locked accounts even for
# key authentication; "*" means "no password" without locking.
if [ "$(getent shadow Administrator | cut -d: -f2)" = "!" ]; then
  usermod -p '*' Administrator
fi
mkdir -p /run/sshd
