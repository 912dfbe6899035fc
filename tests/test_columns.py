"""Column detection shared by the CLI and the notebook panel."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from lead_finder.leads import COLUMN_ROLES, Lead, detect_columns

CASES: list[tuple[str, list[str], dict[str, str]]] = [
    ("minimal", ["name", "company"], {"name": "name", "company": "company"}),
    (
        "case, spaces and underscores",
        ["FULL_NAME", " Company ", "e-mail", "Linked In URL"],
        {"name": "FULL_NAME", "company": " Company ", "email": "e-mail",
         "linkedin": "Linked In URL"},
    ),
    (
        "synonyms",
        ["Contact", "Organisation", "Website", "LinkedIn URL", "E-mail"],
        {"name": "Contact", "company": "Organisation", "domain": "Website",
         "linkedin": "LinkedIn URL", "email": "E-mail"},
    ),
    (
        "given name and surname",
        ["Given name", "Surname", "Employer", "Work Email"],
        {"first_name": "Given name", "last_name": "Surname", "company": "Employer",
         "email": "Work Email"},
    ),
    (
        "camelCase",
        ["firstName", "lastName", "companyName", "companyDomain"],
        {"first_name": "firstName", "last_name": "lastName", "company": "companyName",
         "domain": "companyDomain"},
    ),
    (
        "Salesforce leads",
        ["Lead Owner", "First Name", "Last Name", "Title", "Account Name", "Email", "Phone",
         "Lead Status", "Account ID"],
        {"first_name": "First Name", "last_name": "Last Name", "company": "Account Name",
         "email": "Email"},
    ),
    (
        "Apollo export",
        ["First Name", "Last Name", "Title", "Company", "Company Name for Emails", "Email",
         "Email Status", "Seniority", "Person Linkedin Url", "Website",
         "Company Linkedin Url", "Facebook Url", "Twitter Url", "City"],
        {"first_name": "First Name", "last_name": "Last Name", "company": "Company",
         "domain": "Website", "linkedin": "Person Linkedin Url", "email": "Email"},
    ),
    (
        "HubSpot contacts",
        ["Record ID", "First Name", "Last Name", "Email", "Company Name", "Website URL",
         "Contact owner", "Create Date"],
        {"first_name": "First Name", "last_name": "Last Name", "company": "Company Name",
         "domain": "Website URL", "email": "Email"},
    ),
    (
        "LinkedIn Sales Navigator",
        ["Full Name", "Current Company", "Profile URL", "LinkedIn Profile", "Job Title"],
        {"name": "Full Name", "company": "Current Company", "linkedin": "LinkedIn Profile"},
    ),
    (
        "a bare profile URL is the LinkedIn profile",
        ["Name", "Company", "Profile URL"],
        {"name": "Name", "company": "Company", "linkedin": "Profile URL"},
    ),
    (
        "heuristic matches",
        ["Contact Full Name", "Company (legal name)", "Company Web Site", "Contact E-Mail"],
        {"name": "Contact Full Name", "company": "Company (legal name)",
         "domain": "Company Web Site", "email": "Contact E-Mail"},
    ),
    (
        "the best synonym wins, whatever the column order",
        ["Personal Email", "Contact", "Email", "Full Name", "URL", "Domain"],
        {"name": "Full Name", "domain": "Domain", "email": "Email"},
    ),
    (
        "other languages",
        ["Vorname", "Nachname", "Unternehmen", "Prénom"],
        {"first_name": "Vorname", "last_name": "Nachname", "company": "Unternehmen"},
    ),
    (
        "lookalikes that are something else",
        ["Nickname", "Username", "Email Status", "Company LinkedIn", "Company Email",
         "Parent Company", "Last Contacted", "Account Owner", "Job Title"],
        {},
    ),
    (
        "email domain is a domain",
        ["Name", "Email Domain"],
        {"name": "Name", "domain": "Email Domain"},
    ),
    ("nothing", [], {}),
]


@pytest.mark.parametrize(
    ("columns", "expected"), [(c, e) for _, c, e in CASES], ids=[label for label, _, _ in CASES]
)
def test_detect_columns(columns: list[str], expected: dict[str, str]) -> None:
    assert detect_columns(columns) == expected


def test_roles_come_back_in_a_fixed_order_and_each_column_once() -> None:
    found = detect_columns(["Email", "LinkedIn", "Website", "Company", "Last", "First", "Name"])
    assert list(found) == list(COLUMN_ROLES)
    assert len(set(found.values())) == len(found)


def test_non_text_and_duplicate_headers() -> None:
    columns: list[Any] = [0, None, "Name", "Name", "Company"]
    assert detect_columns(columns) == {"name": "Name", "company": "Company"}


def test_detected_columns_build_leads_from_a_frame() -> None:
    frame = pd.DataFrame(
        {
            "First Name": ["Jane", "John", None],
            "Surname": ["Doe", "Smith", "Roe"],
            "Organisation": ["ACME Inc.", None, "Apex"],
            "Website": [None, "https://smith.example.com/", None],
            "Notes": ["x", "y", "z"],
        }
    )
    roles = detect_columns(list(frame.columns))
    assert roles == {"first_name": "First Name", "last_name": "Surname",
                     "company": "Organisation", "domain": "Website"}
    # The roles are Lead.parse's keyword names, so a row maps straight onto a lead.
    built = [
        Lead.parse(**{role: row[column] for role, column in roles.items()})
        for _, row in frame.iterrows()
    ]
    assert [lead.to_api() for lead in built] == [
        {"name": "Jane Doe", "company": "ACME Inc."},
        {"name": "John Smith", "domain": "https://smith.example.com/"},
        {"name": "Roe", "company": "Apex"},
    ]
