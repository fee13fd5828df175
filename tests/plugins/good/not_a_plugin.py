"""A helper module without any @jobd.hookimpl: discovery skips it (not a plugin)."""

GREETING = "hello"
