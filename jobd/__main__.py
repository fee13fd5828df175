"""``python -m jobd``: the same as the ``jobd`` command."""

from __future__ import annotations

from jobd.client.cli import main

raise SystemExit(main())
