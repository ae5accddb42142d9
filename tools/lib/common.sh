# Shared by tools/quickstart and tools/test: system packages, the cargo target
# directory, and logging. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# A target directory outside the clone is reused between runs (and by CI) when present;
# on a fresh machine it is simply created.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferrohsm-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say() { printf '\n==> %s\n' "$*"; }

# Debian packages the build and the interop tests need:
#   libclang-dev  RocksDB's Rust bindings are generated with bindgen, which loads libclang
#   opensc        pkcs11-tool
#   gnutls-bin    p11tool
#   softhsm2      the token we compare against and the passthrough adapter's test peer
#   openssl       independent verification of signatures
#   python3-pykcs11, xxd   the Python interop tests (Debian's /usr/bin/python3)
#   curl          the HTTP client of the admin API's TLS tests
REQUIRED_PACKAGES=(libclang-dev opensc gnutls-bin softhsm2 openssl python3-pykcs11 python3-cryptography xxd curl prometheus)

ensure_packages() {
  local missing=()
  # The Java interop test needs a JDK; most machines of this kind ship one.
  command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
  for p in "${REQUIRED_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    say "installing missing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

ensure_rust() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
  # rust-toolchain.toml pins the version; rustup installs it on first use when missing.
  (cd "$ROOT" && cargo --version >/dev/null)
}
