"""Layer 4, the client: the ``jobd`` command, its HTTP client, job files, rendering.

Imports nothing of layers 2-4 at load time (the daemon's stack only for ``jobd run``).
"""
