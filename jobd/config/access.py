"""Who may do what (SPEC §11): roles, who the caller is, and the policy that decides.

Three roles, each covering the one below: ``viewer`` (every reading route,
events, metrics, the page), ``operator`` (also submit, edit, batch and job
operations, schedule control), ``admin`` (also delete and reload).

Who the caller is never comes from anything the client sends:

* On the Unix socket the kernel says (``SO_PEERCRED`` on the accepted
  connection: :func:`peer_credentials`, read by :mod:`jobd.service.httpserver`); the
  user's name and supplementary groups come from the user database.
  ``[api] viewers``, ``operators`` and ``admins`` list user names and
  ``@group``s; root and the daemon's own user are always admins; with none of
  the three set, whoever can open the socket is admin (the socket's mode decides).
* Over TCP, the bearer token says: ``[[api.tokens]]`` (``name``, ``file``,
  ``role``) and ``api.token_file`` as the admin token ``default``. Tokens are
  compared in constant time and never logged (:class:`Token` hides its secret).

The client only says which client it is (``X-Jobd-Client: cli`` or ``web``),
which picks the prefix of the ``actor`` recorded in the job's history
(``cli:alice``, ``web:ops-desk``); the name after the colon is the kernel's
or the token's. This module is cheap to import: ``jobd check-config`` uses it.
"""

from __future__ import annotations

import enum
import grp
import hmac
import os
import pwd
import socket
import stat
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobd.config import ApiConfig
from jobd.core.errors import ConfigError, JobdError

#: The header a client names itself with (only the actor's prefix; never who it is).
CLIENT_HEADER = "x-jobd-client"
#: The older spelling the CLI sent before roles existed; read as CLIENT_HEADER.
LEGACY_CLIENT_HEADER = "x-jobd-actor"
#: Client kinds that get their own actor prefix; anything else is ``api``.
CLIENT_KINDS = frozenset({"cli", "web"})
#: The ASGI scope key under which :mod:`jobd.service.httpserver` leaves the Unix socket peer's
#: :class:`PeerCredentials` (nothing a client sends can set a scope key).
PEER_SCOPE_KEY = "jobd.peer"
#: Seconds a user's name and groups are kept before the user database is asked again.
USER_CACHE_SECONDS = 10.0


class Role(enum.Enum):
    """A role; a higher role can do everything a lower one can."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def covers(self, needed: Role) -> bool:
        """True when this role may do what ``needed`` may."""
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


class Forbidden(JobdError):
    """The caller's role is below what the request needs (HTTP 403, code ``forbidden``)."""

    code = "forbidden"
    status = 403

    def __init__(self, what: str, needed: Role, caller: Caller) -> None:
        has = f"a {caller.role.value}" if caller.role is not None else "in no role"
        super().__init__(
            f"{what} needs the {needed.value} role; {caller.describe()} is {has}",
            {"needed": needed.value, "role": caller.role and caller.role.value, **caller.who()},
        )


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """What the kernel says about the process at the other end of a Unix socket."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> PeerCredentials:
    """``SO_PEERCRED`` of a connected Unix stream socket (or uvloop's stand-in for one).

    Raises OSError when the kernel cannot say: not a connected Unix socket
    (Linux then answers uid and gid -1 rather than failing).
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    if uid < 0 or gid < 0:
        raise OSError(f"the kernel names no peer (uid {uid}, gid {gid})")
    return PeerCredentials(pid, uid, gid)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request and what they may do.

    ``name`` is the socket peer's user name or the token's name; None when
    nobody could be told (no token over TCP, an in-process test client).
    ``via`` is ``socket``, ``token`` or ``local`` (in-process, no listener).
    """

    name: str | None
    via: str
    role: Role | None
    client: str = "api"
    uid: int | None = None

    @property
    def actor(self) -> str:
        """What the job history records: ``cli:alice``, ``api:ops-desk``, ``api``."""
        return f"{self.client}:{self.name}" if self.name is not None else self.client

    def may(self, needed: Role) -> bool:
        return self.role is not None and self.role.covers(needed)

    def describe(self) -> str:
        """For messages: ``user alice (uid 1001)``, ``token 'ops-desk'``, ..."""
        if self.name is None:
            return "an anonymous caller" if self.via == "token" else "this caller"
        if self.via == "token":
            return f"token {self.name!r}"
        return f"user {self.name} (uid {self.uid})"

    def who(self) -> dict[str, Any]:
        return {"name": self.name, "via": self.via, "uid": self.uid}

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /v1/health`` says about the caller."""
        return {
            **self.who(),
            "client": self.client,
            "actor": self.actor,
            "role": self.role and self.role.value,
        }


@dataclass(frozen=True, slots=True)
class Token:
    """A named bearer token and its role; the secret is kept out of ``repr`` (and logs)."""

    name: str
    role: Role
    secret: bytes = field(repr=False)


def client_kind(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """``cli`` or ``web`` when the client says so, otherwise ``api``."""
    wanted = {CLIENT_HEADER.encode(), LEGACY_CLIENT_HEADER.encode()}
    for key, value in headers:
        if key.lower() in wanted:
            kind = value.decode("latin-1").strip().lower()
            if kind in CLIENT_KINDS:
                return kind
    return "api"


class Access:
    """The rules one daemon applies; :meth:`update` swaps them on reload.

    ``viewers``/``operators``/``admins`` are user names and ``@group``s (None:
    not set). ``tokens`` are the TCP listener's. ``daemon_uid`` is the daemon's
    own user (an admin, as root is).
    """

    def __init__(
        self,
        *,
        viewers: Sequence[str] | None = None,
        operators: Sequence[str] | None = None,
        admins: Sequence[str] | None = None,
        tokens: Sequence[Token] = (),
        daemon_uid: int | None = None,
    ) -> None:
        self.daemon_uid = os.geteuid() if daemon_uid is None else daemon_uid
        self._users: dict[tuple[int, int], tuple[float, str, frozenset[str]]] = {}
        self._set(viewers, operators, admins, tokens)

    @classmethod
    def from_config(cls, api: ApiConfig, tokens: Sequence[Token] = ()) -> Access:
        return cls(viewers=api.viewers, operators=api.operators, admins=api.admins, tokens=tokens)

    def update(self, api: ApiConfig, tokens: Sequence[Token]) -> None:
        """Apply a reloaded ``[api]`` (role lists and tokens); the next request sees it."""
        self._set(api.viewers, api.operators, api.admins, tokens)
        self._users.clear()

    def _set(
        self,
        viewers: Sequence[str] | None,
        operators: Sequence[str] | None,
        admins: Sequence[str] | None,
        tokens: Sequence[Token],
    ) -> None:
        lists = ((Role.ADMIN, admins), (Role.OPERATOR, operators), (Role.VIEWER, viewers))
        self.open = all(members is None for _, members in lists)
        self._lists = [(role, frozenset(members or ())) for role, members in lists]
        self.tokens = tuple(tokens)

    # ------------------------------------------------------------------ the socket

    def role_of_user(self, uid: int, user: str, groups: Iterable[str]) -> Role | None:
        """The highest role ``user`` (in ``groups``) holds, or None."""
        if self.open or uid in (0, self.daemon_uid):
            return Role.ADMIN
        names = {user, *(f"@{group}" for group in groups)}
        for role, members in self._lists:  # highest first
            if names & members:
                return role
        return None

    def socket_caller(self, peer: PeerCredentials | None, client: str) -> Caller:
        """The caller on the Unix socket; ``peer`` None only for an in-process client."""
        if peer is None:
            return Caller(None, "local", Role.ADMIN if self.open else None, client)
        user, groups = self._identity(peer.uid, peer.gid)
        return Caller(user, "socket", self.role_of_user(peer.uid, user, groups), client, peer.uid)

    def _identity(self, uid: int, gid: int) -> tuple[str, frozenset[str]]:
        """The user's name and groups from the user database, cached a few seconds."""
        now = time.monotonic()
        cached = self._users.get((uid, gid))
        if cached is not None and now - cached[0] < USER_CACHE_SECONDS:
            return cached[1], cached[2]
        user, groups = user_and_groups(uid, gid)
        if len(self._users) > 1000:
            self._users.clear()
        self._users[(uid, gid)] = (now, user, groups)
        return user, groups

    # ------------------------------------------------------------------ tokens

    def token_caller(self, authorization: bytes | None, client: str) -> Caller | None:
        """The caller a bearer ``Authorization`` header names, or None (missing or wrong)."""
        if not authorization:
            return None
        scheme, _, rest = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = self.match_token(rest.strip())
        if token is None:
            return None
        return Caller(token.name, "token", token.role, client)

    def match_token(self, presented: bytes) -> Token | None:
        """The token equal to ``presented``; every token is compared, each in constant time,
        so the time taken says nothing about which one (or how much of one) matched."""
        found = None
        for token in self.tokens:
            if hmac.compare_digest(presented, token.secret):
                found = token
        return found


def user_and_groups(uid: int, gid: int) -> tuple[str, frozenset[str]]:
    """``uid``'s name and the names of its groups (``gid`` and the supplementary ones the
    user database lists). A uid the database does not know is named by its number."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid), frozenset({_group_name(gid)})
    try:
        gids = set(os.getgrouplist(user, gid))
    except OSError:
        gids = {gid}
    return user, frozenset(_group_name(g) for g in gids | {gid})


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# --------------------------------------------------------------------------- token files

#: Mode bits that must be clear on a token file: group and others may not read (or write) it.
TOKEN_FILE_FORBIDDEN_BITS = 0o077


def read_token(path: Path, key: str = "api.token_file") -> str:
    """The bearer token in ``path``, stripped of whitespace.

    Raises :class:`ConfigError` naming the file (and ``key``) if it cannot be
    read, is empty, or its mode lets group or others at it (a token other
    users can read protects nothing).
    """
    where = str(path)
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(where, key, f"cannot read the token: {exc}") from exc
    if st.st_mode & TOKEN_FILE_FORBIDDEN_BITS:
        mode = stat.S_IMODE(st.st_mode)
        raise ConfigError(
            where,
            key,
            f"mode {mode:04o} lets group or others read it; chmod 600 it "
            "(owned by the user jobd runs as)",
        )
    if not text:
        raise ConfigError(where, key, "is empty")
    return text


def load_tokens(api: ApiConfig) -> list[Token]:
    """Every token of ``[api]``: ``token_file`` as ``default`` (admin), then ``[[api.tokens]]``.

    Raises :class:`ConfigError` naming the first file that is unreadable, empty
    or readable by group or others.
    """
    tokens = []
    if api.token_file is not None:
        tokens.append(Token("default", Role.ADMIN, read_token(api.token_file).encode()))
    for index, entry in enumerate(api.tokens):
        key = f"api.tokens[{index}].file"
        secret = read_token(entry.file, key).encode()
        for other in tokens:
            if hmac.compare_digest(secret, other.secret):
                problem = f"holds the same token as {other.name!r}; make each unique"
                raise ConfigError(str(entry.file), key, problem)
        tokens.append(Token(entry.name, Role(entry.role), secret))
    return tokens
