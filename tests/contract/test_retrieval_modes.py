"""The three retrieval modes: transcript search, semantic search, random sampling."""

import pytest

from core.query import ConversationQuery
from core.windows import daily_window
from simulator.selection import similarity
from tests.conftest import SYNC_DAY, Serve, client_for
from tests.contract.expected import fetch, truth

WINDOW = daily_window(SYNC_DAY)


def query(**fields: object) -> ConversationQuery:
    return ConversationQuery(start_time=WINDOW.start, end_time=WINDOW.end, **fields)


@pytest.mark.parametrize(
    ("turn_type", "fields"),
    [(None, ("user_input", "agent_response")), ("user", ("user_input",)),
     ("agent", ("agent_response",))],
)  # fmt: skip
def test_transcript_search_matches_turn_text_honouring_the_turn_filter(
    serve: Serve, turn_type: str | None, fields: tuple[str, ...]
) -> None:
    server = serve()
    needle = "reservation"  # said by callers ("change my reservation") and never by the agent
    got = fetch(
        client_for(server, page_size=10),
        query(query_type="transcript", query=needle, turn_type=turn_type),
    )

    def hit(conversation: dict) -> bool:
        return any(needle in t[f].casefold() for t in conversation["turns"] for f in fields)

    assert got == [c for c in truth(server) if hit(c)]
    if turn_type == "agent":
        assert got == []
    else:
        assert len(got) > 10  # more than one page


def test_semantic_search_ranks_by_similarity(serve: Serve) -> None:
    server = serve()
    text = "cancel my order"
    got = fetch(client_for(server, page_size=25), query(query_type="semantic", query=text))
    scores = [similarity(text, c) for c in got]
    assert len(got) > 25 and all(s > 0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert len({c["id"] for c in got}) == len(got)
    assert len(got) == sum(similarity(text, c) > 0 for c in truth(server))


@pytest.mark.parametrize("limit", [5, 1000])
def test_random_sample_is_within_the_range_and_repeatable(serve: Serve, limit: int) -> None:
    server = serve()
    client = client_for(server)
    first = list(client.iter_pages(query(sample="random", limit=limit)))
    again = fetch(client, query(sample="random", limit=limit))
    everyone = {c["id"]: c for c in truth(server)}
    (page,) = first  # a sample is one page
    assert page.next_cursor is None
    assert len(page.conversations) == min(limit, len(everyone))
    assert all(everyone[c["id"]] == c for c in page.conversations)
    assert page.conversations == again
    if limit == 5:
        chosen = [c["id"] for c in page.conversations]
        assert chosen != list(everyone)[:5]  # a sample, not the first five


@pytest.mark.parametrize("mode", ["transcript", "semantic"])
def test_search_in_a_project_without_transcripts_finds_nothing(serve: Serve, mode: str) -> None:
    server = serve()
    text = "change my reservation"
    assert fetch(client_for(server), query(query_type=mode, query=text))
    hidden = client_for(server, project_id=server.config.transcripts_hidden_project)
    assert fetch(hidden, query(query_type=mode, query=text)) == []
