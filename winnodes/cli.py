"""`winnodes`: the command-line entry point (validate, plan, run grow with the flows)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="winnodes", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(version("winnodes"))
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
