"""`python -m service ...` is `veraltheim-service ...`."""

import sys

from service.cli import main

sys.exit(main())
