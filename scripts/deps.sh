#!/usr/bin/env bash
# Installs what building and testing Hallmark needs on a fresh Debian 12
# machine: Go modules, and the system packages later tests use (swtpm for
# the TPM, clang and bpftool for the XDP program, iproute2 and nftables for
# network-namespace tests, SoftHSM2 for the PKCS#11 plumbing, qemu and a
# Debian kernel for booting built images). Safe to run
# again; it skips what is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

packages=(swtpm swtpm-tools tpm2-tools clang llvm libbpf-dev bpftool iproute2 nftables softhsm2 e2fsprogs qemu-system-x86 linux-image-amd64)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
go mod download
