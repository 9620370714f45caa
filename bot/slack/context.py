"""Everything the listeners need, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from bot.cloud.client import Cloud
from bot.cloud.pricing import Pricer
from bot.courier import Courier
from bot.settings import Settings
from bot.slack.catalogue import CatalogueCache
from bot.slack.names import NameBook
from bot.slack.writer import SlackWriter
from bot.store.repository import RequestStore
from bot.tracker import Tracker
from bot.workflow import Workflow


@dataclass
class BotContext:
    settings: Settings
    store: RequestStore
    cloud: Cloud
    workflow: Workflow
    writer: SlackWriter
    catalogue: CatalogueCache
    tracker: Tracker
    courier: Courier
    sandbox: bool
    pricer: Pricer
    names: NameBook

    def wake_workers(self) -> None:
        """Something changed here: in a process that runs them, the tracker and the courier act now."""
        self.tracker.wake()
        self.courier.wake()
