import sys

from instanas.cli import main

sys.exit(main())
