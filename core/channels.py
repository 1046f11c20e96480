"""Which channel a response's label belongs to, and what a request's filter sends.

A *configured channel* (``voice``, ``chat``: the second half of a scope such as ``live.voice``,
so a partition key) is not what the API calls it. Responses carry analytics labels
(``VOICE-SIP``, ``WEBCHAT``, ``CHAT``); the filter's spelling is not settled (API.md). This
module holds the one mapping between the three: the labels each channel accepts (defaults in
:data:`core.api_contract.CHANNEL_LABELS`, overridden by ``POLYAI_CHANNEL_MAP``) and which values
the ``channel`` filter sends (``POLYAI_CHANNEL_FILTER``). A channel always accepts its own
name as a label too, so a warehouse loaded before labels keeps loading the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from core import api_contract as api
from core.env import Env
from core.errors import PolyAISyncError


class ChannelMapError(PolyAISyncError, ValueError):
    """A channel mapping setting that cannot be read; the message names the setting."""


def _default_labels() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(dict(api.CHANNEL_LABELS))


@dataclass(frozen=True)
class ChannelMap:
    """Configured channel -> the response labels it accepts, and the filter's spelling."""

    labels: Mapping[str, tuple[str, ...]] = field(default_factory=_default_labels)
    filter_mode: str = api.CHANNEL_FILTERS[0]
    _owners: dict[str, str] = field(init=False, repr=False, compare=False)
    """Label -> the channel that has it (each channel has its own name too)."""

    def __post_init__(self) -> None:
        if self.filter_mode not in api.CHANNEL_FILTERS:
            raise ChannelMapError(
                f"{Env.POLYAI_CHANNEL_FILTER}: {self.filter_mode!r} is not one of "
                f"{', '.join(api.CHANNEL_FILTERS)}"
            )
        owners: dict[str, str] = {}
        for channel, labels in self.labels.items():
            for label in (channel, *labels):
                owner = owners.setdefault(label, channel)
                if owner != channel:
                    raise ChannelMapError(
                        f"{Env.POLYAI_CHANNEL_MAP}: label {label!r} is mapped to both "
                        f"{owner!r} and {channel!r}; a label belongs to one channel"
                    )
        object.__setattr__(self, "_owners", owners)  # looked up once per record

    @classmethod
    @functools.cache
    def parse(cls, value: str = "", filter_mode: str = api.CHANNEL_FILTERS[0]) -> ChannelMap:
        """``channel=LABEL,LABEL;channel=LABEL`` entries over the defaults (an entry replaces
        that channel's default labels), e.g. ``voice=VOICE-SIP;chat=WEBCHAT,CHAT``. Cached:
        a client reads its setting once per page."""
        labels = dict(api.CHANNEL_LABELS)
        setting = Env.POLYAI_CHANNEL_MAP
        for entry in _parts(value.split(";")):
            channel, eq, rest = entry.partition("=")
            given = tuple(dict.fromkeys(_parts(rest.split(","))))
            if not eq or not channel.strip() or not given:
                raise ChannelMapError(
                    f"{setting}: {entry!r} is not channel=LABEL[,LABEL...] "
                    "(e.g. voice=VOICE-SIP;chat=WEBCHAT,CHAT)"
                )
            labels[channel.strip()] = given
        return cls(MappingProxyType(labels), filter_mode)

    @property
    def setting(self) -> str:
        """The labels as ``POLYAI_CHANNEL_MAP`` writes them (:meth:`parse` reads it back)."""
        return ";".join(f"{channel}={','.join(labels)}" for channel, labels in self.labels.items())

    def labels_of(self, channel: str) -> tuple[str, ...]:
        """The labels a response may give a conversation of ``channel``: its name first."""
        return tuple(dict.fromkeys((channel, *self.labels.get(channel, ()))))

    def accepts(self, channel: str, label: object) -> bool:
        """Whether a response's ``label`` is one of ``channel``'s."""
        return label == channel or self._owners.get(label) == channel

    def channel_of(self, label: str) -> str:
        """The configured channel a label belongs to (the label itself when none claims it)."""
        return self._owners.get(label, label)

    def filter_values(self, channel: str) -> tuple[str, ...]:
        """What ``channel=`` sends for a configured channel."""
        mapped = self.labels.get(channel, ())
        if self.filter_mode == "name" or not mapped:
            return (channel,)
        if self.filter_mode == "labels":
            return mapped
        return self.labels_of(channel)

    def describe(self, channel: str) -> str:
        """The mapping of one channel, for messages: names the setting that changes it."""
        return f"{Env.POLYAI_CHANNEL_MAP} maps {channel!r} to {', '.join(self.labels_of(channel))}"


def _parts(parts: list[str]) -> list[str]:
    """The non-blank parts, trimmed."""
    return [part.strip() for part in parts if part.strip()]


DEFAULT_CHANNELS = ChannelMap()
