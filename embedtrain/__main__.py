"""Allow ``python -m embedtrain``."""

from embedtrain.cli import main

raise SystemExit(main())
