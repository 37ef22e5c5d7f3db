"""`python -m veraltheim.service ...` is `veraltheim-service ...`."""

import sys

from veraltheim.service.cli import main

sys.exit(main())
