"""``python -m unmix``: the command-line interface (same as the ``unmix`` command)."""

import sys

from .cli import entry

if __name__ == "__main__":
    sys.exit(entry())
