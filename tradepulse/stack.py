"""The local stack: a KRaft Kafka broker from Maven jars and a PostgreSQL server, all state under one directory.

Machines without Docker get the same two services docker-compose.yml runs elsewhere. Everything the stack owns
lives under `settings.data_dir` (kafka/ and postgres/), so deleting that directory resets it. Services configured
with `managed=False` are external: they are health-checked, never started or stopped.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import string
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import deploy
from tradepulse.settings import Settings

logger = logging.getLogger(__name__)

Service = Literal["kafka", "postgres"]

KAFKA_HOME = Path(deploy.__file__).resolve().parent / "kafka"
MIN_JAVA = 17
PG_SUPERUSER = "postgres"
STOP_TIMEOUT_S = 30.0
_POLL_S = 0.2


class StackError(RuntimeError):
    """A stack failure whose message tells the operator what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    """One service as `stack status` shows it."""

    name: str
    managed: bool
    running: bool
    pid: int | None
    address: str
    detail: str


@dataclass(frozen=True)
class StackStatus:
    kafka: ServiceStatus
    postgres: ServiceStatus

    @property
    def services(self) -> tuple[ServiceStatus, ...]:
        return (self.kafka, self.postgres)

    @property
    def healthy(self) -> bool:
        return all(service.running for service in self.services)


@dataclass(frozen=True)
class DatabaseTarget:
    """The parts of `settings.database.url` the managed server is configured from."""

    host: str
    port: int
    user: str
    password: str | None
    dbname: str

    @classmethod
    def from_url(cls, url: str) -> DatabaseTarget:
        # the URL itself stays out of the message: it carries the password
        try:
            parts = conninfo_to_dict(url)
            user = str(parts.get("user") or PG_SUPERUSER)
            return cls(
                host=str(parts.get("host") or "127.0.0.1"),
                port=int(parts.get("port") or 5432),
                user=user,
                password=str(parts["password"]) if parts.get("password") else None,
                dbname=str(parts.get("dbname") or user),
            )
        except psycopg.ProgrammingError as exc:
            raise StackError(f"invalid TRADEPULSE_DATABASE__URL: {str(exc).strip()}") from exc
        except ValueError as exc:
            raise StackError(f"invalid TRADEPULSE_DATABASE__URL: the port must be a number ({exc})") from exc


def parse_bootstrap(bootstrap_servers: str) -> tuple[str, int]:
    """Host and port of the first bootstrap server: the listener a managed broker binds."""
    first = bootstrap_servers.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise StackError(f"invalid Kafka bootstrap server {first!r}; expected host:port, e.g. 127.0.0.1:9092")
    return host.strip("[]"), int(port)


def parse_java_version(version_output: str) -> int:
    """The major version from `java -version` output (`"17.0.15"` → 17, legacy `"1.8.0_292"` → 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        raise StackError(f"cannot read the Java version from: {version_output.strip()[:200]!r}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def new_cluster_id() -> str:
    """A KRaft cluster id in Kafka's own format (URL-safe base64 of a random UUID), without a JVM start."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def render_server_properties(settings: Settings, log_dirs: Path) -> str:
    """The broker's server.properties for these settings, from deploy/kafka/server.properties.template."""
    host, broker_port = parse_bootstrap(settings.kafka.bootstrap_servers)
    template = string.Template((KAFKA_HOME / "server.properties.template").read_text())
    return template.substitute(
        host=host,
        broker_port=broker_port,
        controller_port=settings.kafka.controller_port,
        log_dirs=log_dirs,
        partitions=settings.kafka.partitions,
    )


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port (binding is the only reliable test)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def port_accepts(host: str, port: int) -> bool:
    """Whether a TCP connect succeeds: a cheap pre-check before speaking a protocol to a starting server."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str | None:
    """`pid N (name)` of the local process listening on `port`, when /proc tells (best effort)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    sockets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and not sockets.isdisjoint(_fd_links(proc)):
            try:
                name = (proc / "comm").read_text().strip()
            except OSError:
                name = "?"
            return f"pid {proc.name} ({name})"
    return None


def _fd_links(proc: Path) -> set[str]:
    """What a process's descriptors point at; descriptors closing under us are skipped."""
    links: set[str] = set()
    try:
        descriptors = list((proc / "fd").iterdir())
    except OSError:
        return links
    for descriptor in descriptors:
        try:
            links.add(os.readlink(descriptor))
        except OSError:
            continue
    return links


def port_taken_error(service: str, host: str, port: int, setting: str) -> StackError:
    owner = port_owner(port)
    by = f" by {owner}" if owner else " by another process"
    return StackError(
        f"{service} cannot start: {host}:{port} is already in use{by}. "
        f"Stop that process or choose another port with {setting}."
    )


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a log file (empty when it does not exist yet), read from the end."""
    if lines <= 0:
        return []
    chunk = b""
    try:
        with path.open("rb") as handle:
            position = handle.seek(0, os.SEEK_END)
            while position > 0 and chunk.count(b"\n") <= lines:
                step = min(64 * 1024, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step) + chunk
    except OSError:
        return []
    return chunk.decode(errors="replace").splitlines()[-lines:]


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie awaiting its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def terminate(pid: int, first_signal: signal.Signals, timeout_s: float) -> bool:
    """Send `first_signal`, wait for the exit, SIGKILL after `timeout_s`; True when it stopped on its own."""
    try:
        os.kill(pid, first_signal)
    except ProcessLookupError:
        return True
    if wait_until(lambda: not pid_alive(pid), timeout_s):
        return True
    logger.warning("pid %d did not stop within %.0f s after %s; sending SIGKILL", pid, timeout_s, first_signal.name)
    kill_and_wait(pid)
    return False


def kill_and_wait(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_until(lambda: not pid_alive(pid), 10.0)


def kafka_libs_current(libs: Path, pom: Path) -> bool:
    """Whether libs/ was fetched from this exact pom (its hash is stamped after a complete fetch)."""
    stamp = libs / ".pom.sha256"
    return stamp.is_file() and stamp.read_text().strip() == hashlib.sha256(pom.read_bytes()).hexdigest()


def ensure_kafka_libs(kafka_home: Path = KAFKA_HOME) -> Path:
    """Fetch the broker's runtime jars with Maven unless libs/ already matches the pom; returns libs/.

    Stacks with different data dirs share libs/, so the fetch is serialised with a lock file in target/
    (gitignored, like libs/)."""
    pom = kafka_home / "pom.xml"
    libs = kafka_home / "libs"
    if kafka_libs_current(libs, pom):
        return libs
    work = kafka_home / "target"
    work.mkdir(exist_ok=True)
    with (work / "fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not kafka_libs_current(libs, pom):
            _fetch_kafka_libs(pom, libs, work / f"libs-{os.getpid()}")
    return libs


def _fetch_kafka_libs(pom: Path, libs: Path, staging: Path) -> None:
    """Fetch into a staging dir and swap it in, so libs/ is never half-filled."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not installed; it fetches the Kafka jars. Install the `maven` package.")
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("fetching Kafka jars with Maven into %s", libs)
    started = time.monotonic()
    result = subprocess.run(
        [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", "-DincludeScope=runtime",
         f"-DoutputDirectory={staging}"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        output = (result.stdout + result.stderr).strip().splitlines()[-20:]
        raise StackError("Maven could not fetch the Kafka jars:\n" + "\n".join(output))
    (staging / ".pom.sha256").write_text(hashlib.sha256(pom.read_bytes()).hexdigest() + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    logger.info("fetched %d jars in %.1f s", len(list(libs.glob("*.jar"))), time.monotonic() - started)


def find_java() -> str:
    """The `java` to run the broker with (JAVA_HOME first), checked to be at least Java 17."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None or not Path(java).exists():
        raise StackError(
            f"Java is not installed; Kafka 4 needs Java {MIN_JAVA} or newer "
            "(install `openjdk-17-jre-headless`, or set JAVA_HOME)."
        )
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    major = parse_java_version(result.stderr + result.stdout)
    if major < MIN_JAVA:
        raise StackError(f"{java} is Java {major}; Kafka 4 needs Java {MIN_JAVA} or newer (set JAVA_HOME).")
    return java


def pg_bindir_candidates() -> list[Path]:
    """Where PostgreSQL server programs may live: pg_config's bindir, then Debian's versioned dirs, newest first."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    return candidates + sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_pg_major, reverse=True)


def find_pg_bindir(candidates: list[Path]) -> Path:
    """The first candidate holding the server programs (initdb, pg_ctl, postgres)."""
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise StackError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. Install the `postgresql` "
        "package (apt-get install -y postgresql); the bootstrap script does it."
    )


def _pg_major(bindir: Path) -> int:
    return int(bindir.parent.name) if bindir.parent.name.isdigit() else 0


def run_checked(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"{what} failed ({result.returncode}):\n{(result.stdout + result.stderr).strip()}")


class KafkaService:
    """The managed broker: config rendering, storage format, process start/stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.data_dir.resolve() / "kafka"
        self.data = self.home / "data"
        self.log_dir = self.home / "logs"
        self.config = self.home / "server.properties"
        self.pid_file = self.home / "kafka.pid"
        self.host, self.port = parse_bootstrap(settings.kafka.bootstrap_servers)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def console_file(self) -> Path:
        return self.log_dir / "kafka.out"

    def pid(self) -> int | None:
        """The broker's pid when it runs from this data dir (a stale or reused pid does not count)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid if pid_alive(pid) else None
        return pid if str(self.config).encode() in cmdline and pid_alive(pid) else None

    def start(self) -> int:
        """Spawn the broker (formatting storage on first start); readiness is checked by the caller."""
        running = self.pid()
        if running is not None:
            return running
        for port, setting in ((self.port, "TRADEPULSE_KAFKA__BOOTSTRAP_SERVERS"),
                              (self.settings.kafka.controller_port, "TRADEPULSE_KAFKA__CONTROLLER_PORT")):
            if port_in_use(self.host, port):
                raise port_taken_error("Kafka", self.host, port, setting)
        java = find_java()
        libs = ensure_kafka_libs()
        for directory in (self.data, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(render_server_properties(self.settings, self.data))
        classpath = f"{libs}/*"
        if not (self.data / "meta.properties").exists():
            logger.info("formatting Kafka storage in %s", self.data)
            run_checked([java, "-cp", classpath, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                         "-t", new_cluster_id(), "-c", str(self.config)], "Kafka storage format")
        command = [
            java, f"-Xmx{self.settings.kafka.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={KAFKA_HOME / 'log4j2.properties'}",
            "-cp", classpath, "kafka.Kafka", str(self.config),
        ]
        with self.console_file.open("ab") as console:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=console,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=process.wait, name="kafka-reaper", daemon=True).start()
        self.pid_file.write_text(f"{process.pid}\n")
        logger.info("Kafka broker starting on %s (pid %d)", self.address, process.pid)
        return process.pid

    def wait_ready(self, pid: int) -> None:
        """Block until the broker answers metadata requests; fail with its log tail if it dies or stalls."""
        timeout = self.settings.kafka.ready_timeout_s
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise StackError(f"Kafka exited during start-up.\n{self.log_excerpt()}")
            if port_accepts(self.host, self.port) and kafka_probe(self.settings.kafka.bootstrap_servers, 2.0) is None:
                return
            time.sleep(0.5)
        raise StackError(f"Kafka was not ready within {timeout:g} s (kafka.ready_timeout_s).\n{self.log_excerpt()}")

    def log_excerpt(self, lines: int = 30) -> str:
        excerpt = tail(self.console_file, 10) + tail(self.log_file, lines)
        return f"Last lines of {self.log_dir}:\n" + "\n".join(excerpt)

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        logger.info("stopping Kafka (pid %d)", pid)
        terminate(pid, signal.SIGTERM, STOP_TIMEOUT_S)
        self._released()

    def kill(self) -> None:
        pid = self.pid()
        if pid is not None:
            logger.info("killing Kafka (pid %d) with SIGKILL", pid)
            kill_and_wait(pid)
        self._released()

    def _released(self) -> None:
        """A dead JVM's leader thread turns zombie before its other threads close the listening sockets."""
        self.pid_file.unlink(missing_ok=True)
        ports = (self.port, self.settings.kafka.controller_port)
        if not wait_until(lambda: not any(port_in_use(self.host, port) for port in ports), 10.0):
            logger.warning("Kafka's ports %s are still bound after it stopped", ports)


class PostgresService:
    """The managed PostgreSQL server, run as the `postgres` OS user when we are root."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.target = DatabaseTarget.from_url(settings.database.url)
        self.home = settings.data_dir.resolve() / "postgres"
        self.data = self.home / "data"
        self.log_dir = self.home / "logs"
        self.socket_dir = self.home / "run"

    @property
    def address(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "postgres.log"

    def pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def _as_server_user(self, command: list[str]) -> list[str]:
        """PostgreSQL refuses to run as root, so root runs it through `runuser -u postgres`."""
        if os.geteuid() != 0:
            return command
        runuser = shutil.which("runuser")
        if runuser is None:
            raise StackError("running as root needs `runuser` (util-linux) to start PostgreSQL as `postgres`")
        return [runuser, "-u", PG_SUPERUSER, "--", *command]

    def _own_home(self) -> None:
        """Hand the postgres/ directories to the server user, and check it can reach them through every parent."""
        for directory in (self.data, self.log_dir, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(PG_SUPERUSER)
        except KeyError as exc:
            raise StackError(
                "running as root needs the `postgres` OS user; install the `postgresql` package, which creates it"
            ) from exc
        self._hand_over(self.home, self.data, self.log_dir, self.socket_dir)
        self.data.chmod(0o700)
        probe = subprocess.run(self._as_server_user(["test", "-w", str(self.data)]), check=False)
        if probe.returncode != 0:
            raise StackError(
                f"the `postgres` OS user cannot reach {self.data}; make its parent directories traversable "
                "(chmod o+x) or set TRADEPULSE_DATA_DIR to a directory it can reach"
            )

    def _hand_over(self, *paths: Path) -> None:
        """Files root writes for the server must belong to the server user."""
        if os.geteuid() != 0:
            return
        account = pwd.getpwnam(PG_SUPERUSER)
        for path in paths:
            os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)

    def _write_config(self) -> None:
        """Listen address, port and socket dir come from the settings on every start."""
        conf = self.data / "tradepulse.conf"
        conf.write_text(
            f"listen_addresses = '{self.target.host}'\n"
            f"port = {self.target.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "max_connections = 200\n"
        )
        main_conf = self.data / "postgresql.conf"
        include = "include_if_exists = 'tradepulse.conf'\n"
        if include not in main_conf.read_text():
            with main_conf.open("a") as handle:
                handle.write(include)
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        self._hand_over(conf, main_conf, hba)

    def start(self) -> int:
        """Start the server (initdb on first start) and wait until it accepts connections."""
        running = self.pid()
        if running is not None:
            return running
        if port_in_use(self.target.host, self.target.port):
            raise port_taken_error("PostgreSQL", self.target.host, self.target.port, "TRADEPULSE_DATABASE__URL")
        bindir = find_pg_bindir(pg_bindir_candidates())
        self._own_home()
        if not (self.data / "PG_VERSION").exists():
            logger.info("initialising PostgreSQL data directory %s", self.data)
            run_checked(self._as_server_user([
                str(bindir / "initdb"), "-D", str(self.data), "-U", PG_SUPERUSER, "-E", "UTF8", "--locale=C",
                "--auth-local=trust", "--auth-host=scram-sha-256",
            ]), "initdb")
        self._write_config()
        timeout = int(self.settings.database.ready_timeout_s)
        result = subprocess.run(self._as_server_user([
            str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file), "-w", "-t", str(timeout),
            "start",
        ]), capture_output=True, text=True, check=False)
        pid = self.pid()
        if result.returncode != 0 or pid is None:
            raise StackError(
                f"PostgreSQL did not start within {timeout} s (database.ready_timeout_s): "
                f"{(result.stdout + result.stderr).strip()}\nLast lines of {self.log_file}:\n"
                + "\n".join(tail(self.log_file, 30))
            )
        logger.info("PostgreSQL running on %s (pid %d)", self.address, pid)
        return pid

    def admin_connect(self, dbname: str = "postgres") -> psycopg.Connection:
        """A superuser connection over the unix socket (trusted locally, no password)."""
        return psycopg.connect(host=str(self.socket_dir), port=self.target.port, user=PG_SUPERUSER,
                               dbname=dbname, autocommit=True, connect_timeout=10)

    def ensure_role_and_database(self) -> None:
        """Create (or re-password) the URL's role and its database; the role is a superuser as in the
        timescaledb image, so migrations can create extensions."""
        target = self.target
        if target.password is None:
            raise StackError("the managed database needs a password in TRADEPULSE_DATABASE__URL (TCP uses scram)")
        with self.admin_connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (target.user,)).fetchone()
            verb = sql.SQL("ALTER" if exists else "CREATE")
            conn.execute(sql.SQL("{} ROLE {} WITH LOGIN SUPERUSER PASSWORD {}").format(
                verb, sql.Identifier(target.user), sql.Literal(target.password)))
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.dbname,)).fetchone() is None:
                logger.info("creating database %s", target.dbname)
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(target.dbname), sql.Identifier(target.user)))

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint), SIGKILL if it hangs."""
        pid = self.pid()
        if pid is None:
            return
        logger.info("stopping PostgreSQL (pid %d)", pid)
        terminate(pid, signal.SIGINT, STOP_TIMEOUT_S)


async def _kafka_probe(bootstrap_servers: str, timeout_s: float) -> str | None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await admin.close()
    if not cluster.get("brokers"):
        return "no broker registered yet"
    return None


def kafka_probe(bootstrap_servers: str, timeout_s: float = 5.0) -> str | None:
    """None when the broker answers a metadata request with at least one broker, else why not."""
    return asyncio.run(_kafka_probe(bootstrap_servers, timeout_s))


def database_probe(url: str, timeout_s: float = 5.0) -> str | None:
    """None when the database accepts a login with the URL's credentials, else why not."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout_s))) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def wait_healthy(probe: Callable[[], str | None], timeout_s: float) -> str | None:
    """Poll a probe until it reports no problem (None) or time runs out; returns the last problem."""
    deadline = time.monotonic() + timeout_s
    while True:
        problem = probe()
        if problem is None or time.monotonic() >= deadline:
            return problem
        time.sleep(1.0)


class Stack:
    """Brings the local broker and database up and down; every operation is idempotent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.kafka = KafkaService(settings)
        self.postgres = PostgresService(settings)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise stack operations across processes (parallel test sessions share one stack)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "stack.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self) -> StackStatus:
        """Start what is managed and not running, wait for health, then apply migrations and create topics."""
        started = time.monotonic()
        with self._lock():
            self._start_kafka_and_postgres()
        self._check_external()
        # imported here: the topic specs pull in faust, which status/down/logs never need
        from streams.admin import ensure_topics
        from tradepulse.db import migrate

        applied = migrate(self.settings)
        if applied:
            logger.info("applied migrations: %s", ", ".join(applied))
        created = ensure_topics(self.settings)
        if created:
            logger.info("created %d topics", len(created))
        logger.info("stack up in %.1f s", time.monotonic() - started)
        return self.status()

    def _start_kafka_and_postgres(self) -> None:
        """Start both (the broker boots while PostgreSQL starts); on failure stop what this call started."""
        started: list[Callable[[], None]] = []
        try:
            kafka_pid = None
            if self.settings.kafka.managed:
                was_running = self.kafka.pid() is not None
                kafka_pid = self.kafka.start()
                if not was_running:
                    started.append(self.kafka.stop)
            if self.settings.database.managed:
                was_running = self.postgres.pid() is not None
                self.postgres.start()
                if not was_running:
                    started.append(self.postgres.stop)
                self.postgres.ensure_role_and_database()
            if kafka_pid is not None:
                self.kafka.wait_ready(kafka_pid)
        except (StackError, psycopg.Error):
            for stop in reversed(started):
                stop()
            raise

    def _check_external(self) -> None:
        """External services are only checked (and waited for while they boot): a clear error now beats a hang
        in the first consumer."""
        if not self.settings.kafka.managed:
            bootstrap = self.settings.kafka.bootstrap_servers
            problem = wait_healthy(lambda: kafka_probe(bootstrap, 5.0), self.settings.kafka.ready_timeout_s)
            if problem is not None:
                raise StackError(f"external Kafka at {bootstrap} is not reachable: {problem}")
        if not self.settings.database.managed:
            url = self.settings.database.url
            problem = wait_healthy(lambda: database_probe(url, 5.0), self.settings.database.ready_timeout_s)
            if problem is not None:
                raise StackError(f"external database at {self.postgres.address} is not reachable: {problem}")

    def down(self) -> None:
        """Stop the managed services (a no-op for those already stopped or external)."""
        with self._lock():
            if self.settings.kafka.managed:
                self.kafka.stop()
            if self.settings.database.managed:
                self.postgres.stop()

    def status(self) -> StackStatus:
        return StackStatus(kafka=self._kafka_status(), postgres=self._postgres_status())

    def _kafka_status(self) -> ServiceStatus:
        managed = self.settings.kafka.managed
        pid = self.kafka.pid() if managed else None
        if managed and pid is None:
            return ServiceStatus("kafka", managed, False, None, self.kafka.address, "stopped")
        problem = kafka_probe(self.settings.kafka.bootstrap_servers, 3.0)
        detail = "ready (KRaft broker+controller)" if problem is None else f"not answering: {problem}"
        return ServiceStatus("kafka", managed, problem is None, pid, self.kafka.address, detail)

    def _postgres_status(self) -> ServiceStatus:
        managed = self.settings.database.managed
        pid = self.postgres.pid() if managed else None
        if managed and pid is None:
            return ServiceStatus("postgres", managed, False, None, self.postgres.address, "stopped")
        problem = database_probe(self.settings.database.url, 3.0)
        detail = f"accepting connections to {self.postgres.target.dbname}" if problem is None else problem
        return ServiceStatus("postgres", managed, problem is None, pid, self.postgres.address, detail)

    def log_file(self, service: Service) -> Path:
        return self.kafka.log_file if service == "kafka" else self.postgres.log_file

    def logs(self, service: Service, lines: int = 50) -> list[str]:
        return tail(self.log_file(service), lines)

    def stop_kafka(self) -> None:
        with self._lock():
            self.kafka.stop()

    def kill_kafka(self) -> None:
        """SIGKILL the broker: a crash, for recovery tests."""
        with self._lock():
            self.kafka.kill()

    def start_kafka(self) -> None:
        with self._lock():
            self.kafka.wait_ready(self.kafka.start())

    def stop_postgres(self) -> None:
        with self._lock():
            self.postgres.stop()

    def start_postgres(self) -> None:
        with self._lock():
            self.postgres.start()
