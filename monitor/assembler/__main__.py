"""``python -m monitor.assembler``: see :mod:`monitor.assembler.command_line`."""

from __future__ import annotations

import sys

from monitor.assembler.command_line import main

sys.exit(main())
