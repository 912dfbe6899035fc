"""Property: whatever a spreadsheet cell or a DataFrame holds, a lead that fails validation never
produces an HTTP request from LeadFinder, the layer every front-end calls (an injected transport
counts). The low-level client passes a plain dict through as the API's raw lead object (it only
refuses non-JSON values and empty leads); `Lead` is the validated route, and LeadFinder always
takes it."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lead_finder import LeadFinder, Status
from lead_finder.errors import InvalidLeadError
from lead_finder.leads import Lead
from lead_finder.sixtyfour import Client

CELL_VALUES = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.sampled_from(["", "  ", "N/A", "-", "?", "none", "#REF!", "#N/A", "=1+1", "+cmd", "@x",
                     "x" * 300, "\u200b", "\U0001f680", "\u202e"]),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.datetimes(min_value=dt.datetime(1900, 1, 1)),
    st.just(math.nan),
)


def _invalid(name: object, company: object) -> bool:
    try:
        Lead.parse(name, company)
    except InvalidLeadError:
        return True
    return False


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=CELL_VALUES, company=CELL_VALUES)
def test_invalid_leads_never_reach_the_network(tmp_path: Path, name: object,
                                               company: object) -> None:
    sent: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    if not _invalid(name, company):
        return
    client = Client("sk64_CANARY_property", base_url="http://127.0.0.1:9",
                    transport=httpx.MockTransport(api))
    finder = LeadFinder(cache_path=tmp_path / "c.sqlite3", backend="sixtyfour",
                        use_keyring=False, client=client)
    with finder:
        result = finder.find(name, company)
        many = finder.find_many([(name, company)] * 3)
    assert result.status is Status.ERROR and result.error
    assert all(r.status is Status.ERROR for r in many)
    assert sent == []
