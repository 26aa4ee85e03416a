# Sourced by scripts/bench-*: puts the tools a suite needs in place on a
# fresh Debian machine the way .ci/run does (apt, pip, cargo), or stops with
# a message naming what is missing. Installs only what is not there yet.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v nginx >/dev/null || export PATH="$PATH:/usr/sbin"
export PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
# 1,000 held connections and c256 runs need file descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bench_die() { echo "bench: $*" >&2; exit 1; }

_bench_apt_updated=""
# bench_apt TOOL PACKAGE...: installs the Debian packages if TOOL is missing.
bench_apt() {
  local tool=$1; shift
  command -v "$tool" >/dev/null && return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=$(command -v sudo || true)
  if ! command -v apt-get >/dev/null || { [ "$(id -u)" != 0 ] && [ -z "$sudo" ]; }; then
    bench_die "$tool is not installed and apt-get is not usable here: install $* yourself"
  fi
  echo "bench: installing $* (for $tool)" >&2
  if [ -z "$_bench_apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
    _bench_apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  command -v "$tool" >/dev/null || bench_die "$tool still missing after apt-get install $*"
}

. scripts/lib/pip.sh

# bench_pip TOOL PACKAGE: pip-installs PACKAGE if TOOL is missing.
bench_pip() {
  local tool=$1 pkg=$2
  command -v "$tool" >/dev/null && return 0
  python3 -m pip --version >/dev/null 2>&1 || bench_die "$tool is missing and so is pip (apt install python3-pip)"
  if [ "$pkg" = uwsgi ]; then
    bench_apt gcc build-essential python3-dev   # uWSGI builds from source
  fi
  echo "bench: pip install $pkg (for $tool)" >&2
  pip_install "$pkg"
  command -v pyenv >/dev/null && pyenv rehash || true
  command -v "$tool" >/dev/null || bench_die "$tool is not on PATH after pip install $pkg"
}

# bench_pymod MODULE PACKAGE: pip-installs PACKAGE if python3 cannot
# import MODULE (libraries, where bench_pip looks for a command).
bench_pymod() {
  local mod=$1 pkg=$2
  python3 -c "import $mod" 2>/dev/null && return 0
  python3 -m pip --version >/dev/null 2>&1 || bench_die "python module $mod is missing and so is pip (apt install python3-pip)"
  echo "bench: pip install $pkg (for python module $mod)" >&2
  pip_install "$pkg"
  python3 -c "import $mod" 2>/dev/null || bench_die "python module $mod still missing after pip install $pkg"
}

# bench_uwire_python: the uwire Python package, built from clients/python,
# if python3 cannot import it (an installed one is used as it is: after
# changing clients/python, reinstall it with
#   CARGO_TARGET_DIR=$PWD/clients/python/target pip install --force-reinstall --no-deps ./clients/python).
bench_uwire_python() {
  python3 -c 'import uwire' 2>/dev/null && return 0
  bench_pymod maturin maturin
  echo "bench: pip install ./clients/python" >&2
  CARGO_TARGET_DIR="$PWD/clients/python/target" pip_install ./clients/python
}

# bench_build: the uwire binary and the benchmark examples, release mode.
bench_build() {
  command -v cargo >/dev/null || bench_die "cargo not found: install Rust (rustup)"
  cargo build --release --quiet --bin uwire \
    --example bench_floor --example bench_peers --example bench_hold
}
