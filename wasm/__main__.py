"""`python -m wasm` is `veraltheim-kernel`."""

from .cli import main

raise SystemExit(main())
