"""`make run`: until the desktop app lands, say so and exit cleanly."""

import sys


def main() -> int:
    print("veraltheim: the desktop app is not built yet; see README.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
