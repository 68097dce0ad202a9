"""`python -m redraft`: the same as the `redraft` command."""

from redraft.cli import main

raise SystemExit(main())
