import sys

from edge_lowrank.cli.main import main

sys.exit(main())
