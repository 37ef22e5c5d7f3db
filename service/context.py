"""What a channel or component sees of the running service."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veraltheim.service.metrics import Metrics
from veraltheim.service.presence import Presence
from veraltheim.service.pubsub import PubSub

if TYPE_CHECKING:
    from veraltheim.service.config import ServiceConfig


@dataclass
class ServiceContext:
    config: ServiceConfig
    data_dir: Path
    pubsub: PubSub
    presence: Presence
    metrics: Metrics
    components: dict[str, Any] = field(default_factory=dict)
