"""``python -m uwire``: see :mod:`uwire.cli`."""

from uwire.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
