"""``python -m zip2zip``: the ``zip2zip`` command line (see :mod:`zip2zip.cli`)."""

from zip2zip.cli import main

raise SystemExit(main())
