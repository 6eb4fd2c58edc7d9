"""`python -m raftkv.demo ...`: the same as `raftkv demo ...`."""

from __future__ import annotations

import argparse

from raftkv.demo.command import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raftkv demo", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
