import sys

from clara_live.cli import main

sys.exit(main())
