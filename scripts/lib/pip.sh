# Sourced by .ci/run, scripts/test and scripts/bench/deps.sh: one way to
# pip-install, with no other effect on the shell that sources it.

# pip_install ARGS...: python3 -m pip install ARGS, quietly. Debian's system
# Python refuses global installs (PEP 668) unless told to; this machine's
# own Python (pyenv) does not need the flag, so it is tried without it first
# (that try's errors are not shown; the second try's are).
pip_install() {
  python3 -m pip install -q --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
