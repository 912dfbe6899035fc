"""The wire format: request builders, every response variant, job statuses and error bodies."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

import pytest

from lead_finder.errors import ConfigurationError, InvalidLeadError
from lead_finder.models import Email, Mode, Source, Status
from lead_finder.sixtyfour import _protocol as proto
from lead_finder.sixtyfour._protocol import (
    REF_FIELD,
    JobState,
    ResponseFormatError,
    build_bulk_body,
    build_find_email_body,
    chunk_ranges,
    decode_json,
    error_detail,
    job_state,
    match_by_ref,
    parse_balance,
    parse_bulk,
    parse_entries,
    parse_job,
    parse_result,
    parse_submitted,
    prepare_lead,
    status_error_message,
    validate_base_url,
)


@dataclass(frozen=True)
class FakeLead:
    """Stands in for lead_finder.Lead: anything with to_api() is a lead."""

    name: str
    company: str

    def to_api(self) -> dict[str, str]:
        return {"name": self.name, "company": self.company}


# -- leads and request bodies -----------------------------------------------------------------


def test_prepare_lead_accepts_mappings_and_lead_objects() -> None:
    assert prepare_lead({"name": "Jane", "company": "Acme", "title": None}) == {
        "name": "Jane", "company": "Acme", "title": None,
    }
    assert prepare_lead(FakeLead("Jane", "Acme")) == {"name": "Jane", "company": "Acme"}


@pytest.mark.parametrize(
    ("lead", "field"),
    [
        (["Jane", "Acme"], "lead"),
        ("Jane Doe", "lead"),
        (None, "lead"),
        ({}, "lead"),
        ({"name": "  ", "company": None}, "lead"),
        ({REF_FIELD: "3"}, "lead"),  # only our join key: still empty
        ({1: "Jane"}, "lead"),
        ({"": "Jane"}, "lead"),
        ({"name": "Jane", "company": math.nan}, "company"),  # an empty pandas cell
        ({"name": "Jane", "company": math.inf}, "company"),
        ({"name": "Jane", "company": object()}, "company"),
    ],
)
def test_malformed_leads_are_refused(lead: Any, field: str) -> None:
    with pytest.raises(InvalidLeadError) as caught:
        prepare_lead(lead)
    assert caught.value.field == field


def test_find_email_body_defaults_and_options() -> None:
    body = build_find_email_body({"name": "Jane", "company": "Acme"})
    assert body == {
        "lead": {"name": "Jane", "company": "Acme"},
        "mode": "PROFESSIONAL",
        "verify_emails": True,
    }
    body = build_find_email_body(
        {"name": "Jane"}, mode=" personal ", verify_emails=False, providers=("a", "b"),
        webhook_url="https://hooks.example.com/sixtyfour",
    )
    assert body["mode"] == "PERSONAL"
    assert body["verify_emails"] is False
    assert body["providers"] == ["a", "b"]
    assert body["webhook_url"] == "https://hooks.example.com/sixtyfour"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"mode": "PERSONEL"}, "mode"),
        ({"mode": 3}, "mode"),
        ({"verify_emails": "yes"}, "verify_emails"),
        ({"providers": "hunter"}, "providers"),  # a bare string is not a list of providers
        ({"providers": ["hunter", ""]}, "providers"),
        ({"providers": [1]}, "providers"),
        ({"webhook_url": "http://hooks.example.com/x"}, "webhook_url"),
        ({"webhook_url": "ftp://hooks.example.com/x"}, "webhook_url"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"webhook_url": "https://h.example.com/" + "x" * 2083}, "webhook_url"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidLeadError) as caught:
        build_find_email_body({"name": "Jane", "company": "Acme"}, **options)
    assert caught.value.field == field


def test_loopback_webhook_over_http_is_allowed() -> None:
    body = build_find_email_body({"name": "J"}, webhook_url="http://127.0.0.1:8765/hook")
    assert body["webhook_url"] == "http://127.0.0.1:8765/hook"


def test_bulk_body_carries_one_ref_per_lead() -> None:
    body = build_bulk_body(
        [{"name": "A"}, FakeLead("B", "Beta"), {"name": "C", REF_FIELD: "stale"}],
        ["x", "y", "z"],
        mode="PERSONAL",
    )
    assert [lead[REF_FIELD] for lead in body["leads"]] == ["x", "y", "z"]  # ours replaces "stale"
    assert body["leads"][1] == {"name": "B", "company": "Beta", REF_FIELD: "y"}
    assert body["mode"] == "PERSONAL"
    assert "lead" not in body


@pytest.mark.parametrize(
    ("leads", "refs", "field"),
    [
        ([], [], "leads"),
        ([{"name": str(i)} for i in range(101)], [str(i) for i in range(101)], "leads"),
        ({"name": "A"}, ["0"], "leads"),
        ([{"name": "A"}], [], "refs"),
        ([{"name": "A"}, {"name": "B"}], ["1", "1"], "refs"),
        ([{"name": "A"}], [""], "refs"),
        ([{"name": "A"}, {}], ["0", "1"], "lead"),
    ],
)
def test_bad_bulk_bodies_are_refused(leads: Any, refs: Any, field: str) -> None:
    with pytest.raises(InvalidLeadError) as caught:
        build_bulk_body(leads, refs)
    assert caught.value.field == field


def test_chunk_ranges() -> None:
    assert chunk_ranges(0) == []
    assert chunk_ranges(100) == [range(0, 100)]
    assert chunk_ranges(250) == [range(0, 100), range(100, 200), range(200, 250)]
    assert chunk_ranges(5, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    with pytest.raises(ValueError):
        chunk_ranges(5, 0)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://api.sixtyfour.ai", True),
        ("https://gateway.example.com/sixtyfour/", True),
        ("http://127.0.0.1:8000", True),
        ("http://127.8.9.10", True),
        ("http://[::1]:9000", True),
        ("http://localhost:8000", True),
        ("http://api.sixtyfour.ai", False),
        ("http://10.0.0.5:8000", False),
        ("http://localhost.example.com", False),
        ("ftp://api.sixtyfour.ai", False),
        ("api.sixtyfour.ai", False),
        ("https://user:hunter2@api.sixtyfour.ai", False),
        ("", False),
    ],
)
def test_validate_base_url(url: str, ok: bool) -> None:
    if ok:
        assert not validate_base_url(url).endswith("/")
    else:
        with pytest.raises(ConfigurationError) as caught:
            validate_base_url(url)
        assert "hunter2" not in str(caught.value)


# -- result objects ----------------------------------------------------------------------------


def test_entries_with_three_and_two_items() -> None:
    assert parse_entries([["j@acme.com", "OK", "COMPANY"]], "email") == (
        Email("j@acme.com", "OK", "COMPANY"),
    )
    assert parse_entries([["j@acme.com", "UNKNOWN"]], "email") == (
        Email("j@acme.com", "UNKNOWN", "COMPANY"),
    )
    assert parse_entries([["jane@gmail.com", "OK"]], "personal_email") == (
        Email("jane@gmail.com", "OK", "PERSONAL"),
    )
    assert parse_entries([["j@acme.com", "OK", None]], "personal_email")[0].type == "PERSONAL"
    assert parse_entries([["j@acme.com", "OK", "company", "extra"]], "email")[0].type == "COMPANY"
    assert parse_entries([[None, "NOT_FOUND"]], "email") == (Email("", "NOT_FOUND", "COMPANY"),)
    assert parse_entries(None, "email") == ()
    assert parse_entries([], "email") == ()


def test_unknown_raw_status_is_kept_and_displayed_as_unknown() -> None:
    (entry,) = parse_entries([["j@acme.com", "CATCH_ALL", "COMPANY"]], "email")
    assert entry.status == "CATCH_ALL"
    assert entry.display_status is Status.UNKNOWN


@pytest.mark.parametrize(
    "value",
    ["j@acme.com", {"address": "j@acme.com"}, [["j@acme.com"]], ["j@acme.com"], [[1, "OK"]],
     [["j@acme.com", "OK", 3]]],
)
def test_malformed_entries(value: Any) -> None:
    with pytest.raises(ResponseFormatError):
        parse_entries(value, "email")


def test_result_keeps_echoed_lead_ref_and_cost() -> None:
    data = {
        "name": "Jane Doe", "company": "Acme", "title": "CTO", REF_FIELD: "17",
        "email": [["jane@acme.com", "OK", "COMPANY"], ["j.doe@acme.com", "UNKNOWN"]],
        "cost_cents": 5,
    }
    result = parse_result(data)
    assert result.lead == {"name": "Jane Doe", "company": "Acme", "title": "CTO"}
    assert result.ref == "17"
    assert result.cost_cents == 5
    assert result.mode is Mode.PROFESSIONAL
    assert result.source is Source.API
    assert result.email == "jane@acme.com"
    assert result.emails[1] == Email("j.doe@acme.com", "UNKNOWN", "COMPANY")


def test_personal_result_infers_mode_unless_given() -> None:
    data = {
        "name": "Jane", "email": [["jane@acme.com", "OK", "COMPANY"]],
        "personal_email": [["jane@gmail.com", "OK", "PERSONAL"]],
    }
    assert parse_result(data).mode is Mode.PERSONAL
    assert parse_result(data).email == "jane@gmail.com"
    assert parse_result(data, mode=Mode.PROFESSIONAL).email == "jane@acme.com"
    assert parse_result({"name": "Jane", "email": []}).mode is Mode.PROFESSIONAL


@pytest.mark.parametrize(("cost", "cents"), [(5, 5), (20.0, 20), (4.6, 5), ("5", None),
                                             (True, None), (-1, None), (None, None)])
def test_cost_cents_variants(cost: Any, cents: int | None) -> None:
    assert parse_result({"name": "J", "email": [], "cost_cents": cost}).cost_cents == cents


def test_echoed_text_email_stays_in_the_lead() -> None:
    result = parse_result({"name": "Jane", "email": "jane@acme.com"})
    assert result.emails == ()
    assert result.lead == {"name": "Jane", "email": "jane@acme.com"}


def test_not_found_result() -> None:
    result = parse_result({"name": "Jane", "email": [["", "NOT_FOUND", "COMPANY"]]})
    assert result.email is None
    assert result.status is Status.NOT_FOUND


def test_result_must_be_an_object() -> None:
    with pytest.raises(ResponseFormatError):
        parse_result(["jane@acme.com", "OK"])


def _bulk_items() -> list[dict[str, Any]]:
    return [
        {"name": "A", REF_FIELD: "0", "email": [["a@x.com", "OK", "COMPANY"]]},
        {"name": "B", REF_FIELD: "1", "email": [["b@x.com", "OK"]]},
    ]


@pytest.mark.parametrize(
    "wrap",
    [lambda items: items, lambda items: {"results": items}, lambda items: {"leads": items},
     lambda items: {"results": items, "cost_cents": 10}],
    ids=["list", "results", "leads", "results+extra"],
)
def test_bulk_answer_shapes(wrap: Any) -> None:
    results = parse_bulk(wrap(_bulk_items()), mode=Mode.PROFESSIONAL)
    assert [(r.ref, r.email) for r in results] == [("0", "a@x.com"), ("1", "b@x.com")]


@pytest.mark.parametrize("data", [{"data": []}, "results", None, {"results": "x"}, [1, 2]])
def test_bad_bulk_answers(data: Any) -> None:
    with pytest.raises(ResponseFormatError):
        parse_bulk(data)


def test_match_by_ref_ignores_order() -> None:
    refs = [str(i) for i in range(50)]
    results = [parse_result({"name": f"N{i}", REF_FIELD: str(i), "email": []}) for i in range(50)]
    random.Random(4).shuffle(results)
    matched = match_by_ref(refs, results)
    assert [m.lead["name"] if m else None for m in matched] == [f"N{i}" for i in range(50)]


def test_match_by_ref_missing_unknown_and_repeated() -> None:
    a1 = parse_result({"name": "A1", REF_FIELD: "a", "email": []})
    a2 = parse_result({"name": "A2", REF_FIELD: "a", "email": []})
    stray = parse_result({"name": "Z", REF_FIELD: "zzz", "email": []})
    unnamed = parse_result({"name": "U", "email": []})
    assert match_by_ref(["a", "b"], [a1, a2, stray, unnamed]) == [a1, None]
    # Never by position: two leads, answers without refs, nothing matches.
    assert match_by_ref(["a", "b"], [unnamed, unnamed]) == [None, None]
    # A single lead answered by a single result cannot be mistaken.
    assert match_by_ref(["a"], [unnamed]) == [unnamed]


def test_balance() -> None:
    assert parse_balance({"credits": 12}) == 12.0
    assert parse_balance({"credits": 3.5}) == 3.5
    for bad in ({}, {"credits": "12"}, {"credits": True}, [12]):
        with pytest.raises(ResponseFormatError):
            parse_balance(bad)


@pytest.mark.parametrize("body", [b"<html><body>Bad gateway</body></html>", b'{"email": [["a',
                                  b"", b"\xff\xfe", b"[" * 100_000])
def test_decode_json_refuses_html_and_cut_json(body: bytes) -> None:
    with pytest.raises(ResponseFormatError):
        decode_json(body)


# -- jobs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("RUNNING", JobState.RUNNING), ("running", JobState.RUNNING),
        ("pending", JobState.RUNNING), ("queued", JobState.RUNNING),
        ("processing", JobState.RUNNING), ("something_new", JobState.RUNNING),
        ("completed", JobState.COMPLETED), ("COMPLETED", JobState.COMPLETED),
        (" Completed ", JobState.COMPLETED),
        ("failed", JobState.FAILED), ("FAILED", JobState.FAILED),
        ("cancelled", JobState.FAILED), ("canceled", JobState.FAILED),
        ("terminated", JobState.FAILED), ("timed_out", JobState.FAILED),
        ("TIMED_OUT", JobState.FAILED), ("timed-out", JobState.FAILED),
        ("continued_as_new", JobState.FAILED), ("Continued_As_New", JobState.FAILED),
    ],
)
def test_job_state(status: str, state: JobState) -> None:
    assert job_state(status) is state


def test_submitted_job() -> None:
    job = parse_submitted({"task_id": "t-1", "status": "RUNNING"})
    assert (job.task_id, job.status, job.state, job.results) == ("t-1", "RUNNING", "running", ())
    for bad in ({"status": "RUNNING"}, {"task_id": ""}, {"task_id": 5}, ["t-1"]):
        with pytest.raises(ResponseFormatError):
            parse_submitted(bad)


def test_running_job_has_no_results() -> None:
    job = parse_job({"id": "t-1", "status": "running", "start_time": "2025-01-01T00:00:00Z"})
    assert job.state is JobState.RUNNING
    assert job.results == () and job.charge_cents is None and job.error is None
    assert job.task_id == "t-1"


def test_completed_single_job() -> None:
    data = {
        "id": "t-1", "run_id": "r", "status": "completed", "task_type": "find_email",
        "result": {"name": "Jane", "email": [["jane@acme.com", "OK", "COMPANY"]]},
        "charge_amount": 5,
    }
    job = parse_job(data, task_id="t-1", mode=Mode.PROFESSIONAL)
    assert job.state is JobState.COMPLETED
    assert len(job.results) == 1 and job.results[0].email == "jane@acme.com"
    assert job.charge_cents == 5
    assert job.raw["run_id"] == "r"


@pytest.mark.parametrize(
    "wrap", [lambda items: items, lambda items: {"results": items},
             lambda items: {"leads": items}], ids=["list", "results", "leads"],
)
def test_completed_bulk_job(wrap: Any) -> None:
    data = {"id": "t-2", "status": "COMPLETED", "result": wrap(_bulk_items()),
            "charge_amount": 10.0}
    job = parse_job(data)
    assert [r.ref for r in job.results] == ["0", "1"]
    assert job.charge_cents == 10


def test_job_charge_in_credits_is_not_taken_for_cents() -> None:
    job = parse_job({"id": "t", "status": "completed", "result": [], "charge_credits": 0.5})
    assert job.charge_cents is None
    assert job.raw["charge_credits"] == 0.5


@pytest.mark.parametrize(
    ("error", "text"),
    [("provider down", "provider down"), ({"message": "boom"}, "boom"), (None, None),
     (["x"], '["x"]')],
)
def test_failed_job_error(error: Any, text: str | None) -> None:
    job = parse_job({"id": "t", "status": "failed", "error": error})
    assert job.state is JobState.FAILED and job.error == text


def test_task_id_we_asked_for_wins() -> None:
    assert parse_job({"id": "workflow-9", "status": "running"}, task_id="t-1").task_id == "t-1"
    assert parse_job({"task_id": "t-3", "status": "running"}).task_id == "t-3"


@pytest.mark.parametrize("data", [{"id": "t"}, {"id": "t", "status": ""}, {"status": "running"},
                                  "completed", {"id": "t", "status": "completed", "result": 5}])
def test_malformed_jobs(data: Any) -> None:
    with pytest.raises(ResponseFormatError):
        parse_job(data)


# -- error bodies ------------------------------------------------------------------------------


def test_error_detail_forms() -> None:
    assert error_detail(b'{"detail": "Job not found"}') == ("Job not found", "Job not found")
    fields = [{"loc": ["body", "lead"], "msg": "field required", "type": "missing"},
              {"loc": ["body", "mode"], "msg": "bad mode", "type": "enum"}]
    text, detail = error_detail(json.dumps({"detail": fields}).encode())
    assert text == "body.lead: field required; body.mode: bad mode"
    assert detail == fields
    text, detail = error_detail(b'{"error": "invalid_request", "message": "lead is required"}')
    assert text == "invalid_request: lead is required"
    assert detail["message"] == "lead is required"
    assert error_detail(b"<html>502 Bad Gateway</html>") == ("", None)
    assert error_detail(b'"plain"') == ("plain", "plain")
    text, _ = error_detail(json.dumps({"detail": "x" * 1000}).encode())
    assert len(text) <= 300


def test_many_field_errors_are_summarised() -> None:
    fields = [{"loc": ["body", f"f{i}"], "msg": "bad"} for i in range(8)]
    text, _ = error_detail(json.dumps({"detail": fields}).encode())
    assert text.endswith("(and 3 more)")


def test_status_messages_tell_what_to_do() -> None:
    assert status_error_message(401, "POST", "/find-email", "") == (
        "The API key was rejected (401). Check SIXTYFOUR_API_KEY or run "
        "`lead-finder config set-key`."
    )
    assert "Top up" in status_error_message(402, "POST", "/find-email", "no credits")
    assert "redirect" in status_error_message(302, "POST", "/find-email", "")
    assert "not resubmitted" in status_error_message(404, "GET", "/job-status/t", "Job not found")
    assert "lead.name" in status_error_message(422, "POST", "/find-email", "lead.name: required")
    assert "Try again later" in status_error_message(503, "GET", "/check-balance", "")
    assert proto.status_error_message(418, "GET", "/x", "teapot").startswith("Unexpected")
