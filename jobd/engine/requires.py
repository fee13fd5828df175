"""Workflow ``requires``: the tags a node must have to run a workflow's jobs (SPEC §10).

A node (``[daemon] tags``) runs, claims and admits only the jobs whose workflow's
``requires`` are all among its tags; the others it leaves in ``pending``, the state any
node with room admits from, with the reason in the history entry that put them there
(``jobd show``, the API's ``history``). On one node (SQLite) such a job stays
``pending`` until the configuration gives the node those tags, or the job is cancelled.
"""

from __future__ import annotations

from jobd.config import Config
from jobd.core.models import Job


def not_here(config: Config, job: Job) -> str | None:
    """Why this node may not run ``job`` (the cause of its move to ``pending``), or None."""
    workflow = config.workflows.get(job.spec.workflow)
    if workflow is None or not workflow.requires:
        return None
    tags = config.daemon.tags
    missing = [tag for tag in workflow.requires if tag not in tags]
    if not missing:
        return None
    has = ", ".join(tags) or "no tags"
    return (
        f"due; waiting for a node with tags {', '.join(missing)} "
        f"(workflow {workflow.name} requires {', '.join(workflow.requires)}; "
        f"node {config.daemon.node} has {has})"
    )
