"""``python -m orcarouter``."""

from orcarouter.cli import main

raise SystemExit(main())
