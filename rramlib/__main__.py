import sys

from rramlib.cli.main import main

sys.exit(main())
