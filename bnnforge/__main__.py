"""`python -m bnnforge` is the `bnnforge` command."""
import sys

from bnnforge.cli import main

sys.exit(main())
