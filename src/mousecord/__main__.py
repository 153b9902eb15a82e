import sys

from mousecord.cli import main

sys.exit(main())
