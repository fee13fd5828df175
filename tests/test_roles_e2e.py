"""Who may do what (SPEC §11), end to end: real users, the real daemon, the real CLI.

The suite runs as root, so a session fixture creates unprivileged users and a
group (and removes them afterwards), and the CLI runs as them through
``setpriv``. Python lives under /root (mode 0700) on these machines: the
inheritable and ambient ``CAP_DAC_READ_SEARCH`` lets such a process read it
(and reach the daemon's socket in its 0700 test directory) without changing its
user or groups, which is all the daemon's role check looks at.

Skipped only when not running as root (CI runs as root).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import e2e

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="creates users and runs the CLI as them: needs root"
)

#: Records every event a plugin's ``jobd_job_event`` sees, one JSON line each.
AUDIT_PLUGIN = """
import json, os

import jobd


@jobd.hookimpl
def jobd_job_event(job, event):
    with open(os.environ["JOBD_TEST_AUDIT"], "a") as out:
        out.write(json.dumps(event) + "\\n")
"""


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class People:
    viewer: User
    operator: User  # an operator through the supplementary group only
    admin: User
    outsider: User  # in none of the lists
    group: str


def _run(*cmd: str) -> None:
    """Run a user-database command; retried while another suite's holds the lock on
    /etc/passwd or /etc/group (suites of several checkouts may run side by side)."""
    result: list[subprocess.CompletedProcess[str]] = []

    def done() -> bool:
        result[:] = [subprocess.run(cmd, capture_output=True, text=True, timeout=60)]
        return result[0].returncode == 0 or "lock" not in result[0].stderr

    e2e.wait_until(done, timeout=60, what=f"{cmd[0]} getting the user database's lock")
    assert result[0].returncode == 0, f"{' '.join(cmd)}: {result[0].stderr}"


@pytest.fixture(scope="session")
def people() -> Iterator[People]:
    """Four fresh users and a group, named uniquely (suites may run side by side)."""
    tag = secrets.token_hex(3)
    group = f"jt{tag}ops"
    names = {role: f"jt{tag}{role[:4]}" for role in ("viewer", "operator", "admin", "outsider")}
    made: list[str] = []
    try:
        _run("groupadd", group)
        for role, name in names.items():
            extra = ["-G", group] if role == "operator" else []
            _run("useradd", "-M", "-U", "-s", "/usr/sbin/nologin", *extra, name)
            made.append(name)
        users = {role: _user(name) for role, name in names.items()}
        yield People(group=group, **users)
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True, timeout=60)
            subprocess.run(["groupdel", name], capture_output=True, timeout=60)  # if left
        subprocess.run(["groupdel", group], capture_output=True, timeout=60)


def _user(name: str) -> User:
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid)


@dataclass
class Setup:
    daemon: e2e.Daemon
    people: People
    audit: Path
    url: str
    tokens: dict[str, str]


def _write_token(path: Path, secret: str, mode: int = 0o600) -> Path:
    path.write_text(secret + "\n")
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def setup(people: People) -> Iterator[Setup]:
    """One daemon: socket roles by user and group, three TCP tokens, an auditing plugin."""
    base = e2e.short_dir()
    port = e2e.free_port()
    tokens = {name: secrets.token_hex(16) for name in ("default", "wall", "desk")}
    layout = e2e.write_layout(base)
    (layout.plugins / "audit.py").write_text(AUDIT_PLUGIN)
    dropins = layout.config.parent / "jobd.d"
    dropins.mkdir()
    (dropins / "roles.toml").write_text(
        textwrap.dedent(f"""\
        [api]
        socket_mode = "0666"
        viewers = ["{people.viewer.name}"]
        operators = ["@{people.group}"]
        admins = ["{people.admin.name}"]
        listen = "127.0.0.1:{port}"
        token_file = "{_write_token(base / "admin.token", tokens["default"])}"

        [[api.tokens]]
        name = "wall"
        file = "{_write_token(base / "wall.token", tokens["wall"])}"
        role = "viewer"

        [[api.tokens]]
        name = "desk"
        file = "{_write_token(base / "desk.token", tokens["desk"])}"
        role = "operator"
        """)
    )
    audit = base / "audit.jsonl"
    daemon = e2e.start_daemon(layout, extra_env={"JOBD_TEST_AUDIT": str(audit)})
    try:
        yield Setup(daemon, people, audit, f"http://127.0.0.1:{port}", tokens)
        assert daemon.stop() == 0, daemon.log_text()
    finally:
        if daemon.alive:
            daemon.proc.kill()
            daemon.proc.wait()
        daemon.notify.close()
        shutil.rmtree(base, ignore_errors=True)


def as_user(user: User, *cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as ``user`` (its own groups), able to read Python under /root."""
    prefix = [
        "setpriv",
        f"--reuid={user.uid}",
        f"--regid={user.gid}",
        "--init-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
    return subprocess.run(
        [*prefix, *cmd], capture_output=True, text=True, env=env, timeout=60, cwd=e2e.ROOT
    )


def cli(setup: Setup, user: User, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI as ``user`` on the daemon's Unix socket."""
    env = e2e.jobd_env(JOBD_SOCKET=str(setup.daemon.layout.socket))
    return as_user(user, sys.executable, "-m", "jobd", *args, env=env)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], role: str) -> str:
    """The CLI exited 1 with the daemon's 403 message naming ``role``."""
    assert done.returncode == 1, f"exit {done.returncode}: {done.stdout} {done.stderr}"
    assert f"needs the {role} role" in done.stderr, done.stderr
    return done.stderr


def submit_later(setup: Setup, user: User) -> int:
    """A confirmed job due in an hour (it waits, so any operation can act on it)."""
    out = ok(cli(setup, user, "submit", "demo", "-p", "who=x", "--start", "+1h", "--json"))
    return int(json.loads(out)["id"])


def history(setup: Setup, job_id: int) -> list[dict[str, Any]]:
    return list(setup.daemon.cli_json("show", str(job_id))["history"])


def audited(setup: Setup, job_id: int) -> list[dict[str, Any]]:
    lines = setup.audit.read_text().splitlines() if setup.audit.exists() else []
    return [event for event in map(json.loads, lines) if event["job_id"] == job_id]


# --------------------------------------------------------------------------- the socket


def test_a_viewer_lists_and_shows_but_cannot_cancel(setup: Setup) -> None:
    viewer = setup.people.viewer
    job_id = submit_later(setup, setup.people.admin)
    assert str(job_id) in ok(cli(setup, viewer, "list"))
    assert ok(cli(setup, viewer, "show", str(job_id)))
    message = refused(cli(setup, viewer, "cancel", str(job_id)), "operator")
    assert f"user {viewer.name}" in message and "is a viewer" in message
    refused(cli(setup, viewer, "submit", "demo"), "operator")
    assert setup.daemon.cli_json("show", str(job_id))["state"] == "confirmed"


def test_an_operator_by_group_cancels_but_cannot_reload_or_delete(setup: Setup) -> None:
    operator = setup.people.operator
    assert pwd.getpwnam(operator.name).pw_gid != grp.getgrnam(setup.people.group).gr_gid
    job_id = submit_later(setup, operator)
    assert "canceled" in ok(cli(setup, operator, "cancel", str(job_id)))
    refused(cli(setup, operator, "reload"), "admin")
    refused(cli(setup, operator, "delete", str(job_id)), "admin")
    assert setup.daemon.cli_json("show", str(job_id))["state"] == "canceled"


def test_an_admin_does_everything(setup: Setup) -> None:
    admin = setup.people.admin
    job_id = submit_later(setup, admin)
    ok(cli(setup, admin, "list"))
    ok(cli(setup, admin, "cancel", str(job_id)))
    assert "reloaded" in ok(cli(setup, admin, "reload"))
    assert "deleted" in ok(cli(setup, admin, "delete", str(job_id)))
    done = setup.daemon.cli("show", str(job_id))
    assert done.returncode == 1 and "not found" in done.stderr


def test_a_user_in_no_list_is_refused_even_reading(setup: Setup) -> None:
    outsider = setup.people.outsider
    message = refused(cli(setup, outsider, "list"), "viewer")
    assert f"user {outsider.name}" in message and "in no role" in message
    refused(cli(setup, outsider, "queue"), "viewer")


def test_the_recorded_actor_is_the_real_user(setup: Setup) -> None:
    admin, operator = setup.people.admin, setup.people.operator
    job_id = submit_later(setup, admin)
    ok(cli(setup, operator, "cancel", str(job_id)))
    rows = history(setup, job_id)
    assert [(row["to"], row["actor"]) for row in rows] == [
        ("confirmed", f"cli:{admin.name}"),
        ("canceled", f"cli:{operator.name}"),
    ]
    # `jobd show` prints it; the plugin's jobd_job_event saw it.
    assert f"cli:{operator.name}" in ok(cli(setup, admin, "show", str(job_id)))
    e2e.wait_until(lambda: len(audited(setup, job_id)) == 2, what="the plugin saw both events")
    assert [event["actor"] for event in audited(setup, job_id)] == [
        f"cli:{admin.name}",
        f"cli:{operator.name}",
    ]


def curl_as(user: User, setup: Setup, *args: str) -> Any:
    """``curl`` on the socket as ``user``, with a client header claiming to be root and an
    admin token (both of which the socket must ignore); the decoded JSON answer."""
    cmd = [
        "curl",
        "-s",
        "--unix-socket",
        str(setup.daemon.layout.socket),
        "-H",
        "X-Jobd-Client: cli:root",
        "-H",
        "Authorization: Bearer " + setup.tokens["default"],
        *args,
    ]
    return json.loads(ok(as_user(user, *cmd, env=e2e.jobd_env())))


def test_the_client_cannot_claim_another_user(setup: Setup) -> None:
    """Without the CLI the actor is ``api:<user>``; what the client sends never changes
    the user (a token on the socket counts for nothing)."""
    viewer, operator = setup.people.viewer, setup.people.operator
    job_id = submit_later(setup, setup.people.admin)
    cancel = ("-X", "POST", f"http://jobd/v1/jobs/{job_id}/cancel")
    error = curl_as(viewer, setup, *cancel)["error"]
    assert error["code"] == "forbidden" and error["details"]["needed"] == "operator"
    assert curl_as(operator, setup, *cancel)["state"] == "canceled"
    assert history(setup, job_id)[-1]["actor"] == f"api:{operator.name}"


def test_health_says_who_and_what_role(setup: Setup) -> None:
    for user, role in [
        (setup.people.viewer, "viewer"),
        (setup.people.operator, "operator"),
        (setup.people.admin, "admin"),
        (setup.people.outsider, None),
    ]:
        caller = curl_as(user, setup, "http://jobd/v1/health")["caller"]
        assert caller == {
            "name": user.name,
            "via": "socket",
            "uid": user.uid,
            "client": "api",
            "actor": f"api:{user.name}",
            "role": role,
        }


# --------------------------------------------------------------------------- TCP


def tcp(setup: Setup, token: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {setup.tokens[token]}"} if token else {}
    return httpx.Client(base_url=setup.url, headers=headers, timeout=30)


def test_token_roles_over_tcp(setup: Setup) -> None:
    job_id = submit_later(setup, setup.people.admin)
    with tcp(setup, "wall") as wall, tcp(setup, "desk") as desk, tcp(setup, "default") as admin:
        assert wall.get("/v1/jobs").status_code == 200
        assert wall.get("/metrics").status_code == 200
        answer = wall.post(f"/v1/jobs/{job_id}/cancel")
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "forbidden"
        assert (
            "needs the operator role; token 'wall' is a viewer" in answer.json()["error"]["message"]
        )
        assert desk.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        assert desk.post("/v1/reload").status_code == 403
        assert desk.delete(f"/v1/jobs/{job_id}").json()["error"]["details"]["needed"] == "admin"
        # The same operation by its other route needs the same role.
        assert desk.post(f"/v1/jobs/{job_id}/delete").json()["error"]["details"]["needed"] == (
            "admin"
        )
        assert admin.post("/v1/reload").status_code == 200
        assert admin.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert audited(setup, job_id)[-2]["actor"] == "api:desk"
    assert audited(setup, job_id)[-1]["actor"] == "api:default"


def test_the_cli_over_tcp_records_the_token_name(setup: Setup) -> None:
    job_id = submit_later(setup, setup.people.admin)
    env = e2e.jobd_env(JOBD_URL=setup.url, JOBD_TOKEN=setup.tokens["wall"])
    refused(e2e.run_cli("cancel", str(job_id), env=env), "operator")
    env["JOBD_TOKEN"] = setup.tokens["desk"]
    ok(e2e.run_cli("cancel", str(job_id), env=env))
    assert history(setup, job_id)[-1]["actor"] == "cli:desk"


def test_health_over_tcp_names_the_token_or_nobody(setup: Setup) -> None:
    with tcp(setup, None) as anonymous, tcp(setup, "desk") as desk:
        nobody = anonymous.get("/v1/health").json()["caller"]
        assert (nobody["name"], nobody["role"], nobody["via"]) == (None, None, "token")
        assert anonymous.get("/v1/jobs").status_code == 401
        named = desk.get("/v1/health", headers={"x-jobd-client": "web"}).json()["caller"]
        assert named == {
            "name": "desk",
            "via": "token",
            "uid": None,
            "client": "web",
            "actor": "web:desk",
            "role": "operator",
        }


def test_tokens_never_reach_the_log(setup: Setup) -> None:
    text = setup.daemon.log_text()
    assert all(secret not in text for secret in setup.tokens.values())


# --------------------------------------------------------------------------- token files


def test_check_config_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    loose = _write_token(tmp_path / "wall.token", "t-wall", 0o644)
    config = tmp_path / "jobd.toml"
    config.write_text(
        '[api]\nlisten = "127.0.0.1:8470"\n'
        f'tokens = [{{ name = "wall", file = "{loose}", role = "viewer" }}]\n'
    )
    done = e2e.run_cli("check-config", "--config", str(config))
    assert done.returncode == 1
    assert str(loose) in done.stderr and "api.tokens[0].file" in done.stderr
    assert "mode 0644" in done.stderr
    loose.chmod(0o600)
    assert e2e.run_cli("check-config", "--config", str(config)).returncode == 0


def test_a_reload_applies_new_role_lists(setup: Setup) -> None:
    outsider = setup.people.outsider
    dropin = setup.daemon.layout.config.parent / "jobd.d" / "roles.toml"
    before = dropin.read_text()
    dropin.write_text(
        before.replace(
            f'viewers = ["{setup.people.viewer.name}"]',
            f'viewers = ["{setup.people.viewer.name}", "{outsider.name}"]',
        )
    )
    try:
        refused(cli(setup, outsider, "list"), "viewer")  # not before the reload
        setup.daemon.reload()
        ok(cli(setup, outsider, "list"))
        refused(cli(setup, outsider, "cancel", "1"), "operator")
    finally:
        dropin.write_text(before)
        setup.daemon.reload()
    refused(cli(setup, outsider, "list"), "viewer")


def test_a_running_job_canceled_is_the_cancelers_act_to_the_end(setup: Setup) -> None:
    """The cancel request and the run's end (written when the step has stopped) both
    name whoever canceled, not the scheduler."""
    admin, operator = setup.people.admin, setup.people.operator
    never = setup.daemon.layout.base / "never-created"
    out = ok(cli(setup, admin, "submit", "hold", "-p", f"path={never}", "--json"))
    job_id = int(json.loads(out)["id"])
    e2e.wait_until(
        lambda: setup.daemon.cli_json("show", str(job_id))["state"] == "running",
        what="the job runs",
    )
    ok(cli(setup, operator, "cancel", str(job_id)))
    e2e.wait_until(
        lambda: setup.daemon.cli_json("show", str(job_id))["state"] == "canceled",
        what="the run ends",
    )
    rows = [(row["to"], row["actor"]) for row in history(setup, job_id)]
    assert rows[-2:] == [
        ("cancel-requested", f"cli:{operator.name}"),
        ("canceled", f"cli:{operator.name}"),
    ], rows
