"""Allow ``python -m embedtrain``; Ctrl-C while the command line itself loads is as quiet
as anywhere later."""

import sys

try:
    from embedtrain.cli import main
except KeyboardInterrupt:
    sys.stderr.write("embedtrain: interrupted; nothing was written\n")
    raise SystemExit(130) from None

raise SystemExit(main())
