"""Several real ``jobd run`` daemons on one fresh PostgreSQL database: a cluster for tests.

Not a test module. The ``cluster`` fixture (tests/conftest.py) gives a :class:`Cluster`
on a fresh database (dropped afterwards) in a short folder; a test adds nodes and
starts them::

    def test_x(cluster: Cluster) -> None:
        a, b = cluster.start("a", "b", lease=3)
        job = cluster.submit("a", "hold", "-p", f"path={cluster.base / 'go'}")
        cluster.kill("a")                      # SIGKILL; also freeze/thaw, cut/restore

Every node reads the same configuration but for its ``[daemon] node``, its state
folder and its socket (all under ``base/<name>/``); nodes start together and each is
ready once it sent systemd's ``READY=1`` (tests/e2e.py), waited for with a deadline.
Each daemon's environment carries ``JOBD_TEST_NODE=<name>``, which its step processes
inherit: a step can write which node ran it.

A node started with ``proxied=True`` reaches the database through a small TCP relay of
this process (:class:`DbRelay`): :meth:`Cluster.cut` closes its connections and refuses
new ones (the database is gone for that node only), :meth:`Cluster.restore` lets it
back; :meth:`Cluster.partition` cuts it off silently instead (nothing closed: the server
keeps its sessions). Benchmarks may use :func:`start_cluster` outside pytest.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg

from jobd.client.remote import Client, Endpoint
from tests import e2e

#: A node's default lease in tests: short, so that takeover tests are quick, yet long enough
#: that a node of a loaded machine does not miss its renewals (takeover tests pass their own).
TEST_LEASE = 5.0
#: Workflows every cluster node knows, besides tests/e2e.py's ``demo`` and ``hold``:
#: ``mark`` runs a subprocess that appends ``start <node> <pid>`` to ``{out}``, then ``tick
#: <node> <pid>`` every 50 ms until ``{path}`` exists, then ``end <node> <pid>``: the record
#: of the no-double-run tests (:func:`marks`). Its step has 3 retries. ``escape`` does the
#: same in a process that left the step's process group for a session of its own
#: (``setsid``, as some tools' workers do), while the step waits for it.
CLUSTER_WORKFLOWS = (
    e2e.DEMO_WORKFLOWS
    + """
[workflows.mark]
steps = [ { name = "mark", action = "exec", retries = 3, retry_backoff = 0.1, params = { argv = [
  "sh", "-c",
  "echo start $JOBD_TEST_NODE $$ >> {out}; while [ ! -e {path} ]; do \
echo tick $JOBD_TEST_NODE $$ >> {out}; sleep 0.05; done; echo end $JOBD_TEST_NODE $$ >> {out}",
] } } ]

[workflows.escape]
steps = [ { name = "mark", action = "exec", retries = 3, retry_backoff = 0.1, params = { argv = [
  "sh", "-c",
  "setsid sh -c 'echo start $JOBD_TEST_NODE $$ >> {out}; while [ ! -e {path} ]; do \
echo tick $JOBD_TEST_NODE $$ >> {out}; sleep 0.05; done; echo end $JOBD_TEST_NODE $$ >> {out}' \
& wait",
] } } ]
"""
)


def marks(path: Path) -> list[tuple[str, str, int]]:
    """The lines a ``mark`` step wrote to ``path``: ``(kind, node, pid)`` in order."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2].isdigit():  # the last line may be half written
            out.append((fields[0], fields[1], int(fields[2])))
    return out


def runs(path: Path) -> list[tuple[str, int]]:
    """The attempts recorded in a ``mark`` file: ``(node, pid)`` of each ``start``."""
    return [(node, pid) for kind, node, pid in marks(path) if kind == "start"]


def overlapping(path: Path) -> list[str]:
    """Lines that show two attempts alive at once: a line of an attempt after the start
    of a later one (each attempt's process must be gone before the next one starts)."""
    seen: list[int] = []
    problems = []
    for kind, node, pid in marks(path):
        if kind == "start":
            seen.append(pid)
        elif seen and pid != seen[-1]:
            problems.append(f"{kind} {node} {pid} after the start of pid {seen[-1]}")
    return problems


def start_marked(cluster: Cluster, node: str, workflow: str = "mark") -> tuple[int, Path, Path]:
    """A ``mark`` (or ``escape``) job submitted on ``node`` (which claims it), once its step
    runs there: its id, its marks file and the file that ends it."""
    out, go = cluster.base / f"out-{workflow}.txt", cluster.base / f"go-{workflow}"
    job_id = cluster.submit(node, workflow, "-p", f"out={out}", "-p", f"path={go}")
    e2e.wait_until(
        lambda: [n for n, _ in runs(out)] == [node], timeout=60, what=f"the step running on {node}"
    )
    return job_id, out, go


def assert_taken_over(
    cluster: Cluster, job: tuple[int, Path, Path], since: float, lease: float, lost: str = "a"
) -> str:
    """Node ``lost``'s job ``job`` (:func:`start_marked`) was taken over by another node
    within ``lease`` + 5 s of ``since`` (the database's own times), run there again, ended,
    and never overlapped with ``lost``'s attempt; the node that took it over."""
    job_id, out, go = job
    e2e.wait_until(lambda: len(runs(out)) == 2, timeout=60, what="the step run again")
    (row,) = cluster.sql("SELECT lost_at, lost_by FROM nodes WHERE name = %s", (lost,))
    taker = str(row[1])
    assert runs(out)[1][0] == taker != lost and row[0] is not None, (row, runs(out))
    assert row[0] - since <= lease + 5, f"taken over {row[0] - since:.1f} s after"
    go.touch()
    e2e.wait_until(
        lambda: cluster.show(taker, job_id)["state"] == "completed", timeout=60, what="completed"
    )
    assert overlapping(out) == [], out.read_text()
    shown = cluster.show(taker, job_id)
    assert any(f"loss of node {lost}" in h["cause"] for h in shown["history"]), shown["history"]
    return taker


class DbRelay:
    """A TCP relay from 127.0.0.1:``port`` to the database server, which can be cut.

    One thread accepts; two threads per connection copy bytes. :meth:`cut` closes every
    relayed connection and closes new ones at once (a lost connection: both ends hear of
    it); :meth:`partition` goes silent instead (a lost network: nothing crosses, nothing is
    closed, so the server keeps the node's sessions, as it would until TCP keepalive);
    :meth:`restore` relays new connections again (the silenced ones stay silent)."""

    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target = target
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._silenced: list[socket.socket] = []  # kept open, never relayed again
        self._upstream: list[socket.socket] = []  # this relay's ends towards the server
        self._cut = False
        self._silent = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _connect(self) -> socket.socket:
        if isinstance(self.target, str):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            return upstream
        return socket.create_connection(self.target)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._silent:  # a SYN into the void: the client waits, unanswered
                    self._silenced.append(client)
                    continue
                if self._cut or self._closed:
                    client.close()
                    continue
                try:
                    upstream = self._connect()
                except OSError:
                    client.close()
                    continue
                self._open += [client, upstream]
                self._upstream.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self._is_silenced(src):
                    continue  # dropped on the way
                dst.sendall(data)
        except OSError:
            pass
        if self._is_silenced(src):
            return  # the other end never hears of it
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _is_silenced(self, sock: socket.socket) -> bool:
        with self._lock:
            return sock in self._silenced

    def upstream_ports(self) -> list[int]:
        """The local TCP ports of the relayed connections still open towards the server:
        ``pg_stat_activity.client_port`` of the node's sessions (none for a Unix socket)."""
        with self._lock:
            self._upstream = [s for s in self._upstream if s in self._open]
            upstream = list(self._upstream)
        ports = []
        for s in upstream:
            with suppress(OSError):
                name = s.getsockname()
                if isinstance(name, tuple):
                    ports.append(int(name[1]))
        return ports

    def cut(self) -> None:
        """Close every relayed connection; refuse new ones until :meth:`restore`."""
        with self._lock:
            self._cut = True
            conns, self._open = self._open, []
        for s in conns:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def partition(self) -> None:
        """Let nothing through any more, on the open connections and on new ones, and close
        nothing: neither the node nor the server hears that the other is gone."""
        with self._lock:
            self._silent = True
            self._silenced += self._open
            self._open = []

    def restore(self) -> None:
        with self._lock:
            self._cut = False
            self._silent = False

    def close(self) -> None:
        self.cut()
        self._closed = True
        self._listener.close()
        with self._lock:
            silenced, self._silenced = self._silenced, []
        for s in silenced:
            s.close()


def _server_address(url: str) -> tuple[str, int] | str:
    """Where ``url``'s server listens: ``(host, port)`` or a Unix socket's path."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = str(info.get("host") or "/var/run/postgresql")
    port = int(info.get("port") or 5432)
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def _relayed_url(url: str, port: int) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = info.get("user") or os.environ.get("USER", "postgres")
    return f"postgresql://{user}@127.0.0.1:{port}/{info['dbname']}"


class Cluster:
    """Nodes of one cluster on the database ``url``, each rooted at ``base/<name>``."""

    def __init__(self, url: str, base: Path, *, workflows: str = CLUSTER_WORKFLOWS) -> None:
        self.url = url
        self.base = base
        self.workflows = workflows
        self.layouts: dict[str, e2e.Layout] = {}
        self.daemons: dict[str, e2e.Daemon] = {}
        self.relays: dict[str, DbRelay] = {}
        self._frozen: set[str] = set()

    # ------------------------------------------------------------------ set-up
    def add(
        self,
        name: str,
        *,
        lease: float = TEST_LEASE,
        tags: Sequence[str] = (),
        workers: int = 4,
        proxied: bool = False,
        daemon_extra: str = "",
        **config_kwargs: Any,
    ) -> e2e.Layout:
        """Write node ``name``'s config (not started); ``proxied``: through a :class:`DbRelay`."""
        url = self.url
        if proxied:
            relay = self.relays.get(name) or DbRelay(_server_address(self.url))
            self.relays[name] = relay
            url = _relayed_url(self.url, relay.port)
        extra = "\n".join(
            [
                f'database = "{url}"',
                f'node = "{name}"',
                f"lease = {lease}",
                f"tags = {json.dumps(list(tags))}",
                daemon_extra,
            ]
        )
        config_kwargs.setdefault("workflows", self.workflows)
        layout = e2e.write_layout(self.base / name, daemon_extra=extra, **config_kwargs)
        text = layout.config.read_text()
        shipped = json.dumps(str(e2e.ROOT / "plugins"))
        text = text.replace(
            f'plugin_dirs = ["{layout.plugins}"]', f'plugin_dirs = ["{layout.plugins}", {shipped}]'
        )
        layout.config.write_text(text.replace("workers = 4", f"workers = {workers}", 1))
        self.layouts[name] = layout
        return layout

    def start(self, *names: str, **add_kwargs: Any) -> list[e2e.Daemon]:
        """Start the nodes ``names`` together (adding those not added yet with ``add_kwargs``)
        and return once each is ready; a node that dies or stays silent fails the test
        with its log."""
        for name in names:
            if name not in self.layouts:
                self.add(name, **add_kwargs)
        started = [self._spawn(name) for name in names]
        for daemon in started:
            try:
                daemon.notify.wait_for("READY", alive=lambda d=daemon: d.alive)  # type: ignore[misc]
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}\n--- {daemon.layout.base.name} ---\n{daemon.log_text()}"
                ) from None
        return started

    def _spawn(self, name: str) -> e2e.Daemon:
        if name in self.daemons:
            if self.daemons[name].alive:
                raise AssertionError(f"node {name} is running already")
            self.daemons[name].notify.close()  # the stopped run's; the new run gets its own
        layout = self.layouts[name]
        notify = e2e.NotifyListener(layout.notify)
        env = e2e.jobd_env(NOTIFY_SOCKET=str(layout.notify), JOBD_TEST_NODE=name)
        with layout.log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobd", "run", "--config", str(layout.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=e2e.ROOT,
            )
        daemon = e2e.Daemon(layout, proc, notify, env)
        self.daemons[name] = daemon
        return daemon

    # ------------------------------------------------------------------ using it
    def node(self, name: str) -> e2e.Daemon:
        return self.daemons[name]

    def cli(self, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The real CLI against node ``name``."""
        return self.daemons[name].cli(*args, timeout=timeout)

    def submit(self, name: str, *args: str) -> int:
        """``jobd submit ARGS`` on node ``name``; the new job's id."""
        done = self.cli(name, "submit", *args, "--json")
        assert done.returncode == 0, done.stderr + done.stdout
        return int(json.loads(done.stdout)["id"])

    def show(self, name: str, job_id: int) -> dict[str, Any]:
        """The job as node ``name``'s API shows it: the request of ``jobd show --json``, sent
        by the CLI's own client from this process (no interpreter started per look: tests
        poll this; the CLI itself is what :meth:`cli` and :meth:`submit` run)."""
        endpoint = Endpoint(socket=self.daemons[name].layout.socket)
        with Client(endpoint, timeout=60) as client:
            return client.get_job(job_id)

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``query`` on the cluster's database (a connection of the test's own)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]  # tests' own statements
            return cur.fetchall() if cur.description else []

    def log(self, name: str) -> str:
        return self.layouts[name].log.read_text(errors="replace")

    # ------------------------------------------------------------------ failures
    def kill(self, name: str) -> None:
        """SIGKILL node ``name`` and reap it (its step processes live on: a real crash)."""
        daemon = self.daemons[name]
        if daemon.alive:
            daemon.send(signal.SIGKILL)
        daemon.proc.wait()
        self._frozen.discard(name)

    def freeze(self, name: str) -> None:
        """SIGSTOP node ``name``: it stops renewing, but its children (and watchdog) run."""
        self.daemons[name].send(signal.SIGSTOP)
        self._frozen.add(name)

    def thaw(self, name: str) -> None:
        self.daemons[name].send(signal.SIGCONT)
        self._frozen.discard(name)

    def cut(self, name: str) -> None:
        """Take the database away from node ``name`` (added with ``proxied=True``)."""
        self.relays[name].cut()

    def partition(self, name: str) -> None:
        """Cut node ``name`` off silently (``proxied=True``): :meth:`DbRelay.partition`."""
        self.relays[name].partition()

    def restore(self, name: str) -> None:
        self.relays[name].restore()

    def stop(self, name: str, *, check: bool = True) -> int:
        """SIGTERM node ``name`` and wait; with ``check``, it must exit 0."""
        if name in self._frozen:
            self.thaw(name)
        status = self.daemons[name].stop()
        if check:
            assert status == 0, f"node {name} exited {status}\n{self.log(name)}"
        return status

    def close(self) -> None:
        """The test is over: stop every node still running, all at once and without the
        drain (the second SIGTERM of SPEC's stop: steps are interrupted, not waited for up
        to ``shutdown_grace``); SIGKILL after the stop timeout; close the relays."""
        for name in list(self._frozen):
            self.thaw(name)
        running = [d for d in self.daemons.values() if d.alive]
        for daemon in running:
            daemon.send(signal.SIGTERM)
        for daemon in running:
            with suppress(AssertionError):  # it exited before saying STOPPING
                daemon.notify.wait_for(
                    "STOPPING", timeout=e2e.STOP_TIMEOUT, alive=lambda d=daemon: d.alive
                )
                daemon.send(signal.SIGTERM)  # stopping now, without waiting
        for daemon in running:
            with suppress(AssertionError):  # killed by stop() after its timeout
                daemon.stop()
        for daemon in self.daemons.values():
            daemon.notify.close()
        for relay in self.relays.values():
            relay.close()


@contextmanager
def start_cluster(
    url: str, names: Sequence[str], base: Path | None = None, **add_kwargs: Any
) -> Iterator[Cluster]:
    """A cluster of ``names`` on ``url`` (an existing database), started; closed after.
    ``base``: where the nodes' files go (default: a fresh short folder, removed after)."""
    own = base is None
    folder = e2e.short_dir() if base is None else base
    cluster = Cluster(url, folder)
    try:
        cluster.start(*names, **add_kwargs)
        yield cluster
    finally:
        cluster.close()
        if own:
            shutil.rmtree(folder, ignore_errors=True)
