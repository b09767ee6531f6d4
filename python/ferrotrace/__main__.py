"""`python -m ferrotrace` is the `ferrotrace` command."""

import sys

from ferrotrace.cli import main

sys.exit(main())
