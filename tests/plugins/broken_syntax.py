"""Test plugin: a syntax error on line 3 (excluded from ruff on purpose)."""

def jobd_actions(:
    return []
