"""Shipped plugin: the ``exec`` action runs a program (no shell) and fails on a non-zero exit.

Params: ``argv`` (list of strings, required), ``env`` (map, merged over
jobd's environment), ``cwd`` (default: the job's work directory).
Outputs: ``exit_code`` and ``stdout`` (its last 64 KiB).

``ctx.run_process`` starts the program in its own process group: when the
step times out or the job is cancelled, the whole group gets SIGTERM, then
SIGKILL, so no grandchild outlives the step. Each output line goes to the
job's log.

Like every file in this folder, this is also an example of a drop-in plugin.
"""

from __future__ import annotations

from typing import Any

import jobd


def _argv(argv: Any) -> list[str]:
    if not isinstance(argv, list) or not argv:
        raise jobd.ActionError("exec: 'argv' must be a non-empty list of strings")
    if not all(isinstance(arg, str) for arg in argv):
        raise jobd.ActionError("exec: every item of 'argv' must be a string")
    return argv


def _env(env: Any) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, dict) or not all(isinstance(key, str) for key in env):
        raise jobd.ActionError("exec: 'env' must be a map of variable names to values")
    return {key: str(value) for key, value in env.items()}


def _cwd(cwd: Any) -> str | None:
    if cwd is not None and not isinstance(cwd, str):
        raise jobd.ActionError("exec: 'cwd' must be a path (string)")
    return cwd


async def run(
    ctx: jobd.ActionContext, argv: Any = None, env: Any = None, cwd: Any = None
) -> dict[str, Any]:
    """Run ``argv``; a non-zero exit raises ActionError (and so fails the attempt)."""
    result = await ctx.run_process(_argv(argv), env=_env(env), cwd=_cwd(cwd), check=True)
    return {"exit_code": result.exit_code, "stdout": result.stdout}


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [
        jobd.Action(
            "exec",
            run,
            "Run a program (argv, no shell); fails on a non-zero exit",
            params=(
                jobd.Param("argv", "list[string]", required=True, description="program and args"),
                jobd.Param("env", "map", description="variables merged over jobd's environment"),
                jobd.Param("cwd", "string", description="working directory (default: workdir)"),
            ),
        )
    ]
