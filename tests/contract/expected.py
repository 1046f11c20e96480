"""What a contract test compares: everything the client fetched for a query, and what the
simulator's dataset holds for the same window."""

from core.query import ConversationQuery
from core.windows import daily_window
from resources.polyai_api import PolyAIClient
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY

WINDOW = daily_window(SYNC_DAY)


def fetch(client: PolyAIClient, q: ConversationQuery) -> list[dict]:
    return [c for page in client.iter_pages(q) for c in page.conversations]


def truth(
    server: SimulatorServer,
    environment: str = "live",
    channels: tuple[str, ...] = ("voice", "chat"),
    **served: object,
) -> list[dict]:
    """What the dataset holds for the window, of the internal ``channels``, as served with
    ``served`` (``latency``, ``metadata``, ``project_id``) to a request that asks for it."""
    return list(
        server.dataset.conversations_in(
            environment, list(channels), WINDOW.start, WINDOW.end, **served
        )
    )
