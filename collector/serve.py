"""``tassium-collector serve``: the app under gunicorn, with the sweeper in every worker
process (the lease lets one of them sweep).

Workers are gunicorn's gevent workers, because the collector faces untrusted clients: a
connection that sends its headers a byte a second, or idles after a keep-alive request,
costs a greenlet, not a whole worker process. Headers must arrive within ``header_timeout``
(gunicorn's ``keepalive``: its async workers read each request's headers, the first one
included, under that deadline) and bodies within ``body_timeout`` (``collector.web.bodies``).
Database calls stay blocking (no psycogreen): a greenlet never yields inside a
transaction, so the locking is what it is with one request per process at a time.
"""

import contextlib
import errno
import gc
import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta

import gevent
from gunicorn.app.base import BaseApplication
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

from collector.addresses import is_loopback
from collector.config import CollectorConfig, variable
from collector.logs import GunicornLogger
from protocol.times import utcnow

log = logging.getLogger(__name__)
# prometheus_client's switch to multiprocess mode (collector/web/telemetry.py).
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


class CollectorWorker(GeventWorker):
    """gunicorn's gevent worker, with a time-out on every operation of a client socket, and
    a stop that does not wait for connections idle between requests."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.awaiting_headers: set[gevent.Greenlet] = set()

    @contextlib.contextmanager
    def timeout_ctx(self) -> Iterator[None]:
        # The deadline gunicorn puts on each request's headers (a silent one: the connection
        # just closes), with the waiting greenlet remembered so that a stop can close it.
        if not self.alive:
            # Stopping: a connection that finished its request after the stop began (and so
            # was not waiting when handle_exit closed the others) takes no new one.
            raise NoMoreData()
        waiting = gevent.getcurrent()
        self.awaiting_headers.add(waiting)
        try:
            with gevent.Timeout(self.cfg.keepalive, False):
                yield
        finally:
            self.awaiting_headers.discard(waiting)

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        gevent.spawn(self._close_idle_connections)

    def _close_idle_connections(self) -> None:
        """A connection waiting for its next request holds no work: close it now, or the
        graceful stop waits out its whole keep-alive time (header_timeout) first. Again and
        again until the process ends, for connections that finish a request meanwhile.
        NoMoreData is how gunicorn's own handler learns a client went away: it closes the
        socket quietly, where any other exception would be answered with a 500."""
        while True:
            gevent.killall(list(self.awaiting_headers), NoMoreData, block=False)
            gevent.sleep(0.2)

    def handle(self, listener, client, addr) -> None:
        # GeventWorker.handle leaves the socket without a time-out, so a client that stops
        # reading our response would hold its greenlet and connection for good. Header and
        # body reads have shorter deadlines of their own; this bounds the writes.
        config = self.app.config_obj
        client.settimeout(config.header_timeout + config.body_timeout)
        AsyncWorker.handle(self, listener, client, addr)

    def handle_request(self, listener_name, req, sock, addr) -> bool:
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except TimeoutError:
            # Not a server fault worth a traceback: close the connection quietly.
            self.log.info("closed a connection from %s that stopped reading", addr[0])
            raise StopIteration from None


class CollectorServer(BaseApplication):
    def __init__(self, config: CollectorConfig, metrics_dir: str):
        self.config_obj = config
        self.metrics_dir = metrics_dir
        super().__init__()

    def load_config(self) -> None:
        config = self.config_obj
        self.cfg.set(
            "bind",
            [
                f"[{config.host}]:{config.port}"
                if ":" in config.host
                else f"{config.host}:{config.port}"
            ],
        )
        self.cfg.set("workers", config.processes)
        # By name: gunicorn before 23 only takes a string here.
        self.cfg.set("worker_class", f"{__name__}.{CollectorWorker.__name__}")
        self.cfg.set("worker_connections", config.connections_per_process)
        self.cfg.set("keepalive", config.header_timeout)
        if config.access_log:
            self.cfg.set("accesslog", "-")
        self.cfg.set("logger_class", GunicornLogger)
        self.cfg.set("loglevel", config.log_level.lower())
        self.cfg.set("post_worker_init", self._start_threads)
        self.cfg.set("child_exit", self._child_exit)
        self.cfg.set("proc_name", "tassium-collector")
        # gunicorn's control socket lives in $HOME by default, shared by every server the
        # user runs; the collector is managed by its signals and systemd, not by gunicornc.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self):
        # Imported here so that each worker opens its own database connections after the fork.
        from collector.app import create_app
        from collector.web import telemetry

        app = create_app(self.config_obj)
        telemetry.gather_processes(app, self.metrics_dir)
        # What is loaded now lives as long as the process: kept out of the garbage
        # collector's reach, a full collection no longer walks every module, class and route
        # (a pause of 30-40 ms in the middle of requests, a tail of the 500/s benchmark).
        gc.collect()
        gc.freeze()
        return app

    def _child_exit(self, _arbiter, worker) -> None:
        # A dead process's counters stay in the sum (totals never go backwards when gunicorn
        # replaces a worker); only live gauges' files would be its to remove.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, self.metrics_dir)

    def _start_threads(self, _worker) -> None:
        config = self.config_obj
        sys.unraisablehook = _quiet_while_finalizing
        from collector.uptime.liveness import LivenessThread

        LivenessThread(interval=timedelta(seconds=config.liveness_interval), clock=utcnow).start()
        if config.sweep_interval > 0:
            from collector.uptime.sweeper import SweeperThread

            SweeperThread(
                gap=timedelta(seconds=config.gap),
                retention=timedelta(days=config.metrics_retention_days),
                interval=timedelta(seconds=config.sweep_interval),
                clock=utcnow,
                build_timeout=config.build_timeout,
            ).start()


def _quiet_while_finalizing(
    unraisable: object,
    # Bound now: while the interpreter finalizes, this module's globals may already be gone.
    finalizing=sys.is_finalizing,
    report=sys.__unraisablehook__,
) -> None:
    """A serving process's unraisable exceptions, but for those raised as its interpreter
    tears down after a clean stop. gevent's modules are cleared before logging drops its
    last handlers, whose clean-up then fails on gevent's lock (gevent issue 2148): two lines
    of traceback per process on every stop, about nothing that matters then."""
    if not finalizing():
        report(unraisable)


def raise_open_file_limit(needed: int) -> int:
    """Raise this process's soft limit on open files to its hard limit (the workers inherit
    it): every connection is a file, and the usual soft limit of 1024 is below what
    ``connections_per_process`` allows. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    if soft < needed:
        log.warning(
            "each process may open only %d files, fewer than connections_per_process needs "
            "(%d): raise the limit (LimitNOFILE= in a systemd unit, ulimit -n in a shell)",
            soft,
            needed,
        )
    return soft


@contextlib.contextmanager
def process_metrics() -> Iterator[str]:
    """A private directory (0700) for this run's metrics, in which prometheus_client's
    multiprocess mode keeps each serving process's counters, for /metrics to sum. The mode is
    chosen when prometheus_client is first imported: here it must not be imported yet, and
    the variable set now reaches the processes gunicorn forks, which import it when they load
    the app. A fresh directory each run, since totals from an earlier run's processes would
    be summed in too."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess mode was set")
    directory = tempfile.mkdtemp(prefix="tassium-metrics-")
    owner = os.getpid()
    os.environ[MULTIPROC_DIR] = directory
    try:
        yield directory
    finally:
        # A gunicorn worker leaves through this frame too (it is forked from inside it): only
        # the process that made the directory removes it, when the server stops.
        if os.getpid() == owner:
            os.environ.pop(MULTIPROC_DIR, None)
            shutil.rmtree(directory, ignore_errors=True)


def exposure_problem(config: CollectorConfig) -> str | None:
    """Why ``serve`` must not start with these settings, or None: beyond loopback, only an
    api_token stands between the network and the operator's routes."""
    if is_loopback(config.host) or config.api_token:
        return None
    if config.insecure_open_network:
        log.warning(
            "insecure_open_network: listening on %s without an api_token; operator routes are "
            "closed and anyone who reaches this address is trusted as far as the settings allow",
            config.host,
        )
        return None
    return (
        f"refusing to listen on {config.host} without an api_token: set api_token (16 characters "
        "or more, in the config file or TASSIUM_API_TOKEN), or listen on 127.0.0.1 behind a "
        "proxy that adds it; only on a network where everyone is trusted, set "
        "insecure_open_network: true"
    )


def listen_problem(config: CollectorConfig) -> str | None:
    """Why ``serve`` cannot listen at ``host``:``port``, found by binding it for a moment, or
    None. gunicorn, told to, would retry for five seconds with two ERROR lines a second."""
    host, port = config.host, config.port
    # gunicorn's choice of family: IPv6 for an address with a colon, else IPv4 (a name too).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gunicorn's own socket: a connection of an earlier run in TIME_WAIT is no obstacle.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror as exc:
            return f"cannot listen on {host}: {exc.strerror}: set host to a name or address"
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is in use: stop what holds it, or set port "
                    f"({variable('port')}) to another"
                )
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"cannot listen on {host}: not an address of this machine: set host"
            if exc.errno == errno.EACCES:
                return f"port {port} on {host} needs privileges: set port to 1024 or above"
            return f"cannot listen on port {port} of {host}: {exc.strerror}"
    return None


def serve(config: CollectorConfig) -> None:
    # Room for the database connections, the log and the listening sockets besides.
    raise_open_file_limit(config.connections_per_process + 64)
    with process_metrics() as metrics_dir:
        CollectorServer(config, metrics_dir).run()
