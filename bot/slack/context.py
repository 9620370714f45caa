"""Everything the listeners need, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from bot.cloud.client import Cloud
from bot.settings import Settings
from bot.slack.catalogue import CatalogueCache
from bot.slack.notifier import SlackNotifier
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
    notifier: SlackNotifier
    catalogue: CatalogueCache
    tracker: Tracker
    sandbox: bool

    def wake_tracker(self) -> None:
        self.tracker.wake()
