"""``python -m cleancut.server``: serve with settings from the ``CLEANCUT_*`` environment."""

from __future__ import annotations

import sys

from ..config import load
from ..errors import CleancutError
from . import run


def main() -> None:
    try:
        settings = load()
    except CleancutError as exc:
        print(f"cleancut: error: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None
    run(settings)


if __name__ == "__main__":
    main()
