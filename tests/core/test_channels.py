import pytest

from core.channels import ChannelMap, ChannelMapError
from core.config import Settings
from core.query import ConversationQuery
from core.urls import ConfigError
from core.windows import Scope, daily_window
from tests.conftest import SYNC_DAY


def test_defaults_map_each_channel_to_its_published_labels() -> None:
    channels = ChannelMap()
    assert channels.labels_of("voice") == ("voice", "VOICE-SIP")
    assert channels.labels_of("chat") == ("chat", "WEBCHAT", "CHAT")
    assert channels.channel_of("CHAT") == "chat" and channels.channel_of("VOICE-SIP") == "voice"
    assert channels.channel_of("SMS") == "SMS"  # claimed by none
    assert channels.labels_of("sms") == ("sms",)  # a channel of no mapping: its name


@pytest.mark.parametrize(
    ("mode", "voice", "chat"),
    [
        ("both", ["voice", "VOICE-SIP"], ["chat", "WEBCHAT", "CHAT"]),
        ("labels", ["VOICE-SIP"], ["WEBCHAT", "CHAT"]),
        ("name", ["voice"], ["chat"]),
    ],
)
def test_the_filter_sends_what_the_mode_says(mode: str, voice: list, chat: list) -> None:
    channels = ChannelMap(filter_mode=mode)
    window = daily_window(SYNC_DAY)
    for channel, expected in (("voice", voice), ("chat", chat)):
        query = ConversationQuery.for_window(Scope("live", channel), window, channels=channels)
        assert query.params()["channel"] == expected
    # A channel no mapping knows is sent as it is named, whatever the mode.
    assert channels.filter_values("sms") == ("sms",)


def test_the_setting_replaces_a_channels_labels_and_keeps_the_others() -> None:
    channels = ChannelMap.parse("voice=VOICE-SIP,VOICE-PSTN; sms=SMS", "labels")
    assert channels.labels_of("voice") == ("voice", "VOICE-SIP", "VOICE-PSTN")
    assert channels.labels_of("chat") == ("chat", "WEBCHAT", "CHAT")
    assert channels.filter_values("sms") == ("SMS",)
    assert ChannelMap.parse(channels.setting, "labels") == channels


@pytest.mark.parametrize(
    ("value", "mode", "named"),
    [
        ("voice", "both", "channel=LABEL"),
        ("voice=", "both", "channel=LABEL"),
        ("=VOICE-SIP", "both", "channel=LABEL"),
        ("voice=WEBCHAT", "both", "'WEBCHAT' is mapped to both 'voice' and 'chat'"),
        ("", "labelz", "POLYAI_CHANNEL_FILTER: 'labelz'"),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_setting(value: str, mode: str, named: str) -> None:
    with pytest.raises(ChannelMapError, match=named):
        ChannelMap.parse(value, mode)
    environ = {"POLYAI_CHANNEL_MAP": value, "POLYAI_CHANNEL_FILTER": mode}
    with pytest.raises(ConfigError, match=r"POLYAI_CHANNEL_(MAP|FILTER)"):
        Settings.from_env(environ)


def test_settings_read_the_mapping_and_the_partition_keys_stay_the_channel_names() -> None:
    settings = Settings.from_env({"POLYAI_CHANNEL_MAP": "chat=WEBCHAT"})
    assert settings.channel_map.labels_of("chat") == ("chat", "WEBCHAT")
    assert settings.channel_map.filter_mode == "both"
    assert [s.key for s in settings.scopes] == ["live.voice", "live.chat"]


def test_the_studio_region_is_a_region() -> None:
    settings = Settings.from_env({"POLYAI_REGION": "studio"})
    assert settings.base_url == "https://api.studio.poly.ai"
