"""One real server process: start, wait until it listens, stop, kill, freeze (SIGSTOP), thaw."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
FERRETDB_VERSION = "v1.24.2"
_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pagecache"
# The stand-in patch (atomic write commands, as MongoDB's; see its header) keys the binary built with it.
FERRETDB_PATCH = REPO / "devstack" / "ferretdb" / "atomic_writes.go"
FERRETDB_BIN = (
    _CACHE
    / f"ferretdb-{FERRETDB_VERSION}-pagecache-{hashlib.sha256(FERRETDB_PATCH.read_bytes()).hexdigest()[:12]}"
    / "ferretdb"
)
TOXIPROXY_VERSION = "v2.12.0"
TOXIPROXY_BIN = _CACHE / f"toxiproxy-{TOXIPROXY_VERSION}" / "toxiproxy-server"
# FerretDB as released: only the test that shows why the patch exists runs it.
FERRETDB_PLAIN_BIN = Path(os.environ.get("FERRETDB_PLAIN_BIN", _CACHE / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"))


class ServerError(RuntimeError):
    """A server did not start; the message carries the end of its log."""


# Ports handed out to servers: below the kernel's ephemeral range, where client sockets get their
# ports (a port found free there can be taken by an outgoing connection before its server binds it).
# PAGECACHE_PORTS ("low-high") narrows it, e.g. one slice per parallel test worker; a Redis
# Cluster node's bus port (port + 10000) lies above every slice, in [20000, 30000).
PORTS = range(10000, 20000)
_handed_out: set[int] = set()


def port_range() -> range:
    """The ports this process may hand out (PAGECACHE_PORTS, else ``PORTS``)."""
    low, _, high = os.environ.get("PAGECACHE_PORTS", "").partition("-")
    return range(int(low), int(high)) if low and high else PORTS


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(bus_offset: int = 0) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that this process has not
    handed out before (``bus_offset``: port + offset must be free too)."""
    candidates = port_range()
    for _ in range(500):
        port = random.choice(candidates)
        if port in _handed_out or not _bindable(port) or (bus_offset and not _bindable(port + bus_offset)):
            continue
        _handed_out.add(port)
        return port
    raise ServerError(f"no free port in {candidates.start}-{candidates.stop}")


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, as Redis Cluster needs."""
    return free_port(bus_offset=10000)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def child_pids(pid: int) -> set[int]:
    """The direct children of process ``pid`` (a renderer's workers), from /proc."""
    children: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children.update(int(child) for child in f.read().split())
    except OSError:
        pass
    return children


def require_binary(name: str) -> str:
    """The path of ``name`` on PATH, or a clear error saying how to install it."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        raise ServerError(f"{name} is not installed: run scripts/provision")
    return path


# Every server this process started, in order (the test suite shows the logs of a failed test's).
STARTED: list[Server] = []


class Server:
    """A server process in its own process group, logging to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        ready_path: str | None = None,
        cwd: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        self.host = host  # where it is reached (a host's address, for one in a network namespace)
        self.argv = list(argv)
        self.port = port
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.ready_path = ready_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None  # also set for a process adopted from another run's state

    def __repr__(self) -> str:
        return f"<{self.name} :{self.port} pid={self.pid}>"

    @property
    def running(self) -> bool:
        """True while the process is alive (frozen counts as alive)."""
        if self.proc is not None:
            return self.proc.poll() is None
        if self.pid is None:
            return False
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                return stat.read().split(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return False

    def to_state(self) -> dict[str, object]:
        """What another process needs to signal or restart this server (see ``from_state``)."""
        return {
            "name": self.name,
            "argv": self.argv,
            "port": self.port,
            "log_path": str(self.log_path),
            "env": self.env,
            "ready_path": self.ready_path,
            "cwd": str(self.cwd) if self.cwd else None,
            "host": self.host,
            "pid": self.pid,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> Server:
        """Adopt a server described by ``to_state`` (it may have been started by another process)."""
        server = cls(
            str(state["name"]),
            list(state["argv"]),  # type: ignore[call-overload]
            int(state["port"]),  # type: ignore[call-overload]
            Path(str(state["log_path"])),
            state.get("env"),  # type: ignore[arg-type]
            state.get("ready_path"),  # type: ignore[arg-type]
            Path(str(state["cwd"])) if state.get("cwd") else None,
            str(state.get("host") or "127.0.0.1"),
        )
        server.pid = state.get("pid")  # type: ignore[assignment]
        return server

    def start(self, timeout: float = 30.0, shares_port: bool = False) -> Server:
        """Start the process and wait until it accepts connections (``shares_port``: beside
        another on the same port, as renderers do with SO_REUSEPORT)."""
        if self.running:
            return self
        if port_open(self.port, self.host) and not shares_port:
            raise ServerError(f"{self.name}: port {self.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
        )
        self.pid = self.proc.pid
        log.close()
        STARTED.append(self)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if port_open(self.port, self.host) and self._answers():
                return
            time.sleep(0.05)
        raise ServerError(f"{self.name} not ready on port {self.port} after {timeout}s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        if self.ready_path is None:
            return True
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}{self.ready_path}", timeout=1):
                return True
        except Exception:
            return False

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _signal_group(self, signum: int) -> None:
        if self.pid is not None:
            try:
                os.killpg(self.pid, signum)
            except ProcessLookupError:
                pass

    def _wait_exit(self, timeout: float) -> bool:
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.running

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (after SIGCONT, in case it is frozen), then SIGKILL if it does not exit."""
        if not self.running:
            return
        self._signal_group(signal.SIGCONT)
        self._signal_group(signal.SIGTERM)
        if not self._wait_exit(timeout):
            self.kill()
        self._wait_port_free()

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        self._signal_group(signal.SIGKILL)
        self._wait_exit(10)
        self._wait_port_free()

    def _wait_port_free(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while port_open(self.port, self.host) and time.monotonic() < deadline:
            time.sleep(0.05)

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze``."""
        self._signal_group(signal.SIGCONT)

    def restart(self) -> Server:
        """Stop if running, then start again on the same port."""
        self.stop()
        return self.start()


def redis_server(run_dir: Path, port: int, maxmemory: str = "256mb", extra: Sequence[str] = ()) -> Server:
    """Debian's redis-server: no persistence, ``maxmemory`` with volatile-lru (it evicts only keys
    with a TTL: every page record has one, the purge log has none)."""
    data = run_dir / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        require_binary("redis-server"),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--maxmemory", maxmemory,
        "--maxmemory-policy", "volatile-lru",
        "--dir", str(data),
        *extra,
    ]  # fmt: skip
    return Server("redis", argv, port, run_dir / f"redis-{port}.log")


def ferretdb(run_dir: Path, port: int, binary: Path = FERRETDB_BIN) -> Server:
    """FerretDB v1.24.2 with its SQLite backend: a MongoDB wire-protocol server (by default the
    build with the stand-in patch, whose writes are atomic per document as MongoDB's are)."""
    if not binary.exists():
        raise ServerError(f"FerretDB not built at {binary}: run scripts/provision")
    data = run_dir / f"ferretdb-{port}"
    (data / "sqlite").mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        "--handler=sqlite",
        f"--sqlite-url=file:{data / 'sqlite'}/",
        f"--listen-addr=127.0.0.1:{port}",
        f"--state-dir={data}",
        "--telemetry=disable",
        "--debug-addr=-",
        "--log-level=warn",
    ]
    return Server("ferretdb", argv, port, run_dir / f"ferretdb-{port}.log")


def index_ferretdb_ids(run_dir: Path, port: int, database: str, collections: Sequence[str]) -> None:
    """Make FerretDB's lookups by ``_id`` use an index, as MongoDB's do (creating ``collections``).

    FerretDB v1.24.2's SQLite backend builds its ``_id`` index on ``_ferretdb_sjson->"_id"`` but
    pushes ``{_id: v}`` down as ``_ferretdb_sjson->'$._id' = ?``, which SQLite does not match to
    that index: every lookup by ``_id`` scans the whole table (25 ms at 4,000 articles, growing
    with the catalogue), where MongoDB answers from its index. An index on the pushed-down
    expression gives the stand-in MongoDB's cost. It lives only in the SQLite file: FerretDB's own
    metadata (``listIndexes``) does not know it, and dropping the collection drops it.
    """
    import sqlite3

    from pymongo import MongoClient

    with MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=5000) as client:
        existing = set(client[database].list_collection_names())
        for name in collections:
            if name not in existing:
                client[database].create_collection(name)
        db = sqlite3.connect(run_dir / f"ferretdb-{port}" / "sqlite" / f"{database}.sqlite", timeout=10)
        with closing(db), db:
            for name, table in db.execute("SELECT name, table_name FROM _ferretdb_collections").fetchall():
                if name in collections:
                    index = f'"{table}__id_pushdown" ON "{table}" (_ferretdb_sjson->\'$._id\')'
                    db.execute(f"CREATE INDEX IF NOT EXISTS {index}")


def _varnishd(base: Path, port: int, admin_port: int, storage: str, address: str = "127.0.0.1") -> list[str]:
    """varnishd in the foreground, working in ``base``, with a ``public`` listener on ``address``
    and an ``admin`` one on the loopback (its purge agent's)."""
    argv = [
        require_binary("varnishd"),
        "-F",
        "-n", str(base / "work"),
        "-a", f"public={address}:{port}",
        "-a", f"admin=127.0.0.1:{admin_port}",
        "-T", f"127.0.0.1:{free_port()}",
        "-s", storage,
    ]  # fmt: skip
    if os.geteuid() == 0:
        # The run dir is private (0700); the default jail would switch to a user that cannot read it.
        argv += ["-j", "none"]
    return argv


def varnish(
    run_dir: Path,
    port: int,
    backend_port: int,
    admin_port: int | None = None,
    storage: str = "malloc,128m",
    stock: bool = False,
    backend_host: str = "127.0.0.1",
    address: str = "127.0.0.1",
) -> Server:
    """Debian's varnishd in the foreground with ``varnish/default.vcl`` in front of one renderer
    (on ``backend_host``).

    Two listeners: ``public`` on ``address:port`` (readers) and ``admin`` on ``admin_port`` (purges,
    bans). ``stock``: Varnish's built-in VCL instead, same flags, storing text gzipped as ours does
    so that both serve the same bytes to gzip clients — the benchmark's yardstick.
    """
    base = run_dir / f"varnish-{port}"
    base.mkdir(parents=True, exist_ok=True)
    argv = _varnishd(base, port, admin_port or free_port(), storage, address)
    if stock:
        stock_vcl = base / "stock.vcl"
        stock_vcl.write_text(
            "vcl 4.1;\n"
            f'backend default {{ .host = "127.0.0.1"; .port = "{backend_port}"; }}\n'
            'sub vcl_backend_response { if (beresp.http.Content-Type ~ "^text/") { set beresp.do_gzip = true; } }\n'
        )
        argv += ["-f", str(stock_vcl)]
    else:
        vcl_dir = base / "vcl"
        vcl_dir.mkdir(parents=True, exist_ok=True)
        # Varnish resolves includes next to the including file first, so both files go in vcl_dir.
        shutil.copy(REPO / "varnish" / "default.vcl", vcl_dir / "default.vcl")
        template = (REPO / "varnish" / "backends.vcl").read_text()
        backends = template.replace('"8888"', f'"{backend_port}"').replace(
            '.host = "127.0.0.1"', f'.host = "{backend_host}"'
        )
        (vcl_dir / "backends.vcl").write_text(backends)
        argv += ["-p", f"vcl_path={vcl_dir}", "-f", str(vcl_dir / "default.vcl")]
    server = Server("stock-varnish" if stock else "varnish", argv, port, run_dir / f"varnish-{port}.log")
    server.workdir = base / "work"  # type: ignore[attr-defined]
    return server


def cdn_varnish(run_dir: Path, port: int, admin_port: int, edge_port: int, storage: str = "malloc,64m") -> Server:
    """The emulated CDN: Debian's varnishd with ``devstack/cdn/cdn.vcl`` in front of our edge's
    public listener (``edge_port``); purges arrive on ``admin_port`` from the purge API stub."""
    base = run_dir / f"cdn-{port}"
    vcl_dir = base / "vcl"
    vcl_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "devstack" / "cdn" / "cdn.vcl", vcl_dir / "cdn.vcl")
    (vcl_dir / "cdn_backend.vcl").write_text(
        f'backend edge {{ .host = "127.0.0.1"; .port = "{edge_port}"; }}\nacl purgers {{ "127.0.0.1"; }}\n'
    )
    argv = [*_varnishd(base, port, admin_port, storage), "-p", f"vcl_path={vcl_dir}", "-f", str(vcl_dir / "cdn.vcl")]
    server = Server("cdn", argv, port, run_dir / f"cdn-{port}.log")
    server.workdir = base / "work"  # type: ignore[attr-defined]
    return server


def cdn_api(run_dir: Path, port: int, cdn_admin_port: int, *options: str) -> Server:
    """The purge API stub (``devstack.cdn_api``: Fastly's and Cloudflare's endpoints) in front of
    the emulated CDN's admin listener."""
    argv = [sys.executable, "-m", "devstack.cdn_api", "--port", str(port)]
    argv += ["--cdn-admin", f"http://127.0.0.1:{cdn_admin_port}", *options]
    return Server("cdn-api", argv, port, run_dir / f"cdn-api-{port}.log", ready_path="/healthcheck/live", cwd=REPO)


def renderer(run_dir: Path, port: int, env: Mapping[str, str]) -> Server:
    """The Tornado renderer (``python -m renderer``) with ``env`` on top of this environment."""
    full_env = {**os.environ, "PORT": str(port), **env}
    argv = [sys.executable, "-m", "renderer"]
    log_path = run_dir / f"renderer-{port}.log"
    return Server("renderer", argv, port, log_path, full_env, "/healthcheck/live", cwd=REPO)


def toxiproxy(run_dir: Path, port: int, address: str) -> Server:
    """Shopify's toxiproxy (``devstack.links``): its API on ``address:port``, its proxies added later."""
    if not TOXIPROXY_BIN.exists():
        raise ServerError(f"toxiproxy not built at {TOXIPROXY_BIN}: run scripts/provision")
    argv = [str(TOXIPROXY_BIN), "-host", address, "-port", str(port)]
    return Server("toxiproxy", argv, port, run_dir / f"toxiproxy-{port}.log", host=address)


def purge_agent(
    run_dir: Path, port: int, node: str, varnish_admin_port: int, env: Mapping[str, str], host: str = "127.0.0.1"
) -> Server:
    """The purge agent (``python -m renderer.purge_agent``) beside one Varnish node, named ``node``;
    its peers and probes reach it on ``host`` (it listens on every address when that is not the
    loopback)."""
    full_env = {
        **os.environ,
        **env,
        "PURGE_AGENT_NODE": node,
        "PURGE_AGENT_PORT": str(port),
        "PURGE_AGENT_URL": f"http://{host}:{port}",
        "PURGE_AGENT_VARNISH_URL": f"http://127.0.0.1:{varnish_admin_port}",
        "ADDRESS": "127.0.0.1" if host == "127.0.0.1" else "0.0.0.0",
    }
    argv = [sys.executable, "-m", "renderer.purge_agent"]
    return Server("agent", argv, port, run_dir / f"agent-{port}.log", full_env, "/ready", cwd=REPO, host=host)


@dataclass(frozen=True)
class Backend:
    """One server behind the load balancer: where readers' requests go, and where it is checked."""

    name: str
    host: str
    port: int
    check_port: int


def haproxy_config(port: int, stats: Path | None, check_path: str, backends: Sequence[Backend]) -> str:
    """HAProxy in front of ``backends``, round robin over those whose ``check_path`` (on their
    ``check_port``) answers 200: down after two failed checks 300 ms apart, up after two good ones;
    a request that gets no answer or a 503 from one server is tried on another. ``stats``: a
    stats socket (a path under about 100 bytes)."""
    lines = [
        "global",
        *([f"    stats socket {stats} mode 600 level admin"] if stats else []),
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 10s",
        "    timeout server 10s",
        "    retries 2",
        "    option redispatch",
        # A page request that fails on one server (no connection, a 503) is tried on another:
        # a node cut off from the renderers answers 503 for what it does not hold until its
        # readiness check takes it out.
        "    retry-on conn-failure empty-response response-timeout 503",
        "frontend readers",
        f"    bind 127.0.0.1:{port}",
        "    default_backend servers",
        "backend servers",
        "    balance roundrobin",
        f"    option httpchk GET {check_path}",
        "    http-check expect status 200",
        *(
            f"    server {b.name} {b.host}:{b.port} check port {b.check_port} inter 300ms fall 2 rise 2"
            for b in backends
        ),
    ]
    return "\n".join(lines) + "\n"


def haproxy(run_dir: Path, port: int, check_path: str, backends: Sequence[Backend]) -> Server:
    """Debian's HAProxy (``haproxy_config``, no stats socket), its config in ``run_dir``."""
    base = run_dir / f"haproxy-{port}"
    base.mkdir(parents=True, exist_ok=True)
    config = base / "haproxy.cfg"
    config.write_text(haproxy_config(port, None, check_path, backends))
    argv = [require_binary("haproxy"), "-db", "-f", str(config)]
    return Server("haproxy", argv, port, run_dir / f"haproxy-{port}.log")


SENTINEL_SERVICE = "pagecache"


@dataclass(frozen=True)
class Place:
    """Where a server of a group runs: ``wrap`` turns its argv into one run there (a host's
    ``Host.wrap``; the identity on the machine), ``address`` is where the others reach it."""

    address: str = "127.0.0.1"
    wrap: Callable[[list[str]], list[str]] = list


def redis_sentinel_group(
    run_dir: Path,
    primary_at: Place = Place(),
    replica_at: Place = Place(),
    sentinels_at: Sequence[Place] = (Place(),) * 3,
) -> tuple[dict[str, Server], str]:
    """A Redis primary (``redis``), one replica (``redis-replica``) and a sentinel at each of
    ``sentinels_at`` (``sentinel-1``…, ``redis-server --sentinel``, a majority of them the quorum),
    started; and the ``redis+sentinel://`` URL that names them. By default all on loopback.
    Sentinel declares the primary down after 1 s and fails over within a few seconds."""
    primary_port, replica_port = free_port(), free_port()

    def placed(server: Server, place: Place) -> Server:
        if place.address != "127.0.0.1":  # reached from elsewhere, on a private network
            server.argv += ["--bind", place.address, "127.0.0.1", "--protected-mode", "no"]
        server.argv, server.host = place.wrap(server.argv), place.address
        return server.start()

    # A replica (again) syncs at once, not after the default 5 s wait for others to share the transfer.
    sync_now = ["--repl-diskless-sync-delay", "0"]
    primary = placed(redis_server(run_dir, primary_port, extra=sync_now), primary_at)
    replica_of = ["--replicaof", primary_at.address, str(primary_port)]
    replica = placed(redis_server(run_dir, replica_port, extra=[*sync_now, *replica_of]), replica_at)
    group = {"redis": primary, "redis-replica": replica}
    quorum = len(sentinels_at) // 2 + 1
    for n, place in enumerate(sentinels_at, start=1):
        port = free_port()
        directory = run_dir / f"sentinel-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"  # sentinels rewrite their own file: it must be writable
        conf.write_text(
            f"port {port}\nbind {place.address}\nprotected-mode no\ndir {directory}\n"
            f"sentinel monitor {SENTINEL_SERVICE} {primary_at.address} {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n"
            f"sentinel failover-timeout {SENTINEL_SERVICE} 5000\n"
            f"sentinel parallel-syncs {SENTINEL_SERVICE} 1\n"
        )
        argv = place.wrap([require_binary("redis-server"), str(conf), "--sentinel"])
        sentinel = Server("sentinel", argv, port, run_dir / f"sentinel-{port}.log", host=place.address)
        group[f"sentinel-{n}"] = sentinel.start()
    hosts = ",".join(f"{s.host}:{s.port}" for name, s in group.items() if name.startswith("sentinel"))
    return group, f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}"


def redis_cluster(run_dir: Path, ports: Sequence[int]) -> list[Server]:
    """A Redis Cluster of ``len(ports)`` masters on loopback, hash slots assigned, state ok."""
    nodes = [
        redis_server(
            run_dir,
            port,
            extra=["--cluster-enabled", "yes", "--cluster-config-file", str(run_dir / f"redis-{port}" / "nodes.conf")],
        ).start()
        for port in ports
    ]
    try:
        addresses = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [
                require_binary("redis-cli"),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                info = subprocess.run(
                    [require_binary("redis-cli"), "-p", str(port), "cluster", "info"], capture_output=True, text=True
                ).stdout
                if "cluster_state:ok" in info:
                    break
                if time.monotonic() > deadline:
                    raise ServerError(f"Redis Cluster not ok on port {port}:\n{info}")
                time.sleep(0.1)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes
