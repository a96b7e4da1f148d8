"""``tassium-collector serve``: the app under gunicorn, with the sweeper in every worker
process (the lease lets one of them sweep)."""

import ipaddress
import logging
from datetime import timedelta

from gunicorn.app.base import BaseApplication

from collector.config import CollectorConfig
from protocol.times import utcnow

log = logging.getLogger(__name__)


def listens_beyond_loopback(host: str) -> bool:
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


class CollectorServer(BaseApplication):
    def __init__(self, config: CollectorConfig):
        self.config_obj = config
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
        self.cfg.set("accesslog", "-")
        self.cfg.set("loglevel", config.log_level.lower())
        self.cfg.set("post_worker_init", self._start_sweeper)
        self.cfg.set("proc_name", "tassium-collector")
        # gunicorn's control socket lives in $HOME by default, shared by every server the
        # user runs; the collector is managed by its signals and systemd, not by gunicornc.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self):
        # Imported here so that each worker opens its own database connections after the fork.
        from collector.app import create_app

        return create_app(self.config_obj)

    def _start_sweeper(self, _worker) -> None:
        config = self.config_obj
        if config.sweep_interval > 0:
            from collector.sweeper import SweeperThread

            SweeperThread(
                gap=timedelta(seconds=config.gap),
                interval=timedelta(seconds=config.sweep_interval),
                clock=utcnow,
            ).start()


def serve(config: CollectorConfig) -> None:
    if listens_beyond_loopback(config.host) and not config.api_token:
        log.warning(
            "listening on %s without an API token: anyone who reaches it can change deployments "
            "and payments; set api_token",
            config.host,
        )
    CollectorServer(config).run()
