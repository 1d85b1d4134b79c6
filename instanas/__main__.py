import sys

from instanas.cli import main

if __name__ == "__main__":  # not when a spawned timing process imports this module as its parent's main
    sys.exit(main())
