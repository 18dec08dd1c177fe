"""``python -m fastbce.bench [options]``: the same as ``fastbce bench``."""

from . import main

raise SystemExit(main())
