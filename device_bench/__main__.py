"""`python -m device_bench ...`: the bench command where only device_bench, numpy and ai-edge-litert exist."""

import sys

from .cli import main

sys.exit(main())
