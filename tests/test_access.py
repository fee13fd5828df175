"""jobd.config.access: the role policy, token files and peer credentials (SPEC §11).

The end-to-end proof with real users, a real daemon and the real CLI is in
tests/test_roles_e2e.py; these pin the rules themselves.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from jobd.config import ApiConfig, TokenConfig
from jobd.config.access import (
    Access,
    Caller,
    PeerCredentials,
    Role,
    Token,
    client_kind,
    load_tokens,
    peer_credentials,
    read_token,
    user_and_groups,
)
from jobd.core.errors import ConfigError

LISTED = Access(viewers=["vera"], operators=["@ops", "otto"], admins=["ada"], daemon_uid=4242)


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.covers(Role.OPERATOR) and Role.OPERATOR.covers(Role.VIEWER)
    assert not Role.VIEWER.covers(Role.OPERATOR)
    assert not Role.OPERATOR.covers(Role.ADMIN)


@pytest.mark.parametrize(
    ("uid", "user", "groups", "role"),
    [
        (1001, "vera", [], Role.VIEWER),
        (1002, "otto", [], Role.OPERATOR),
        (1003, "olga", ["staff", "ops"], Role.OPERATOR),  # through a group
        (1004, "ada", ["ops"], Role.ADMIN),  # the highest role wins
        (1005, "nobody-listed", ["staff"], None),
        (1006, "ops", [], None),  # "@ops" is the group, not a user called ops
        (0, "root", [], Role.ADMIN),
        (4242, "jobd", [], Role.ADMIN),  # the daemon's own user
    ],
)
def test_role_of_user(uid: int, user: str, groups: list[str], role: Role | None) -> None:
    assert LISTED.role_of_user(uid, user, groups) is role


def test_with_no_lists_everyone_on_the_socket_is_admin() -> None:
    assert Access(daemon_uid=4242).role_of_user(1005, "anyone", []) is Role.ADMIN


def test_an_empty_list_is_set_and_leaves_only_root_and_the_daemon() -> None:
    access = Access(viewers=[], daemon_uid=4242)
    assert access.role_of_user(1005, "anyone", []) is None
    assert access.role_of_user(0, "root", []) is Role.ADMIN


def test_update_swaps_the_lists() -> None:
    access = Access(viewers=["vera"], daemon_uid=4242)
    access.update(ApiConfig(operators=("vera",)), [])
    assert access.role_of_user(1001, "vera", []) is Role.OPERATOR


def test_socket_caller_uses_the_user_database() -> None:
    user, groups = user_and_groups(0, 0)
    caller = Access(viewers=[]).socket_caller(PeerCredentials(1, 0, 0), "cli")
    assert caller == Caller(user, "socket", Role.ADMIN, "cli", 0)
    assert caller.actor == f"cli:{user}"
    assert "root" in groups


def test_an_unknown_uid_is_named_by_its_number() -> None:
    user, _ = user_and_groups(2_000_000_123, 2_000_000_123)
    assert user == "2000000123"


def test_an_in_process_caller_is_admin_only_when_no_lists_are_set() -> None:
    assert Access().socket_caller(None, "api").role is Role.ADMIN
    assert LISTED.socket_caller(None, "api").role is None
    assert Access().socket_caller(None, "api").actor == "api"


def test_tokens_pick_their_caller() -> None:
    access = Access(
        tokens=[Token("default", Role.ADMIN, b"t-admin"), Token("wall", Role.VIEWER, b"t-wall")]
    )
    wall = access.token_caller(b"Bearer t-wall", "web")
    assert wall == Caller("wall", "token", Role.VIEWER, "web")
    assert wall.actor == "web:wall"
    assert access.token_caller(b"bearer  t-admin ", "api") == Caller(
        "default", "token", Role.ADMIN, "api"
    )
    for bad in (None, b"", b"Bearer", b"Bearer t-wal", b"Basic t-wall", b"Bearer \xff"):
        assert access.token_caller(bad, "api") is None


def test_a_token_never_shows_in_its_repr() -> None:
    assert "t-secret" not in repr(Token("x", Role.ADMIN, b"t-secret"))


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ([(b"x-jobd-client", b"cli")], "cli"),
        ([(b"x-jobd-client", b"web")], "web"),
        ([(b"x-jobd-actor", b"cli")], "cli"),  # what the CLI sent before roles existed
        ([(b"x-jobd-client", b"root")], "api"),  # only the known kinds
        ([], "api"),
    ],
)
def test_client_kind(headers: list[tuple[bytes, bytes]], kind: str) -> None:
    assert client_kind(headers) == kind


def test_peer_credentials_come_from_the_kernel() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_credentials(left) == PeerCredentials(os.getpid(), os.getuid(), os.getgid())


def test_peer_credentials_of_a_tcp_socket_fail() -> None:
    with socket.socket() as sock, pytest.raises(OSError):
        peer_credentials(sock)


# --------------------------------------------------------------------------- token files


def token_file(tmp_path: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_read_token(tmp_path: Path) -> None:
    assert read_token(token_file(tmp_path, "token", "  abc123\n")) == "abc123"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_read_token_refuses_a_file_group_or_others_can_get_at(tmp_path: Path, mode: int) -> None:
    token = token_file(tmp_path, "token", "abc123", mode)
    with pytest.raises(ConfigError, match=f"mode {mode:04o} lets group or others") as info:
        read_token(token)
    assert str(token) in str(info.value)


def test_read_token_refuses_empty_or_missing(tmp_path: Path) -> None:
    empty = token_file(tmp_path, "token", "\n")
    with pytest.raises(ConfigError, match="empty") as info:
        read_token(empty)
    assert str(empty) in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(tmp_path / "absent")


def test_load_tokens(tmp_path: Path) -> None:
    api = ApiConfig(
        token_file=token_file(tmp_path, "admin", "t-admin"),
        tokens=(TokenConfig("wall", token_file(tmp_path, "wall", "t-wall\n"), "viewer"),),
    )
    tokens = load_tokens(api)
    assert [(t.name, t.role, t.secret) for t in tokens] == [
        ("default", Role.ADMIN, b"t-admin"),
        ("wall", Role.VIEWER, b"t-wall"),
    ]


def test_load_tokens_names_the_entry_of_a_bad_file(tmp_path: Path) -> None:
    loose = token_file(tmp_path, "wall", "t-wall", 0o644)
    api = ApiConfig(tokens=(TokenConfig("wall", loose, "viewer"),))
    with pytest.raises(ConfigError) as info:
        load_tokens(api)
    assert info.value.file == str(loose)
    assert info.value.key == "api.tokens[0].file"


def test_load_tokens_refuses_one_secret_for_two_names(tmp_path: Path) -> None:
    api = ApiConfig(
        token_file=token_file(tmp_path, "admin", "same"),
        tokens=(TokenConfig("wall", token_file(tmp_path, "wall", "same"), "viewer"),),
    )
    with pytest.raises(ConfigError, match="same token as 'default'"):
        load_tokens(api)
