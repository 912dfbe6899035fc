"""Unit tests of the engine's pure parts: names, candidates, ranking, learning, domains, consent."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lead_finder.engine import (
    PATTERNS,
    REASONS,
    SMTP_PROBE_WARNING,
    PatternBook,
    candidates,
    disable_smtp_probe,
    enable_smtp_probe,
    is_free_mail,
    name_parts,
    smtp_probe_enabled,
)
from lead_finder.engine.domains import company_domain_guesses, lead_domain
from lead_finder.leads import Lead


def locals_for(name: str, domain: str = "acme.com", book: PatternBook | None = None) -> list[str]:
    parts = name_parts(name)
    assert parts is not None
    return [c.local for c in candidates(parts, domain, book=book)]


# -- patterns and priors ----------------------------------------------------------------------


def test_eight_to_twelve_patterns_with_priors_summing_to_one() -> None:
    assert 8 <= len(PATTERNS) <= 12
    assert abs(sum(p.prior for p in PATTERNS) - 1.0) < 1e-9
    templates = [p.template for p in PATTERNS]
    for required in ("{first}.{last}", "{f}{last}", "{first}", "{first}{last}", "{first}{l}",
                     "{f}.{last}", "{first}_{last}", "{last}.{first}", "{last}{f}", "{last}"):
        assert required in templates
    assert templates[0] == "{first}.{last}"


def test_plain_name_follows_the_priors() -> None:
    found = locals_for("Jane Doe")
    assert found[:4] == ["jane.doe", "jdoe", "jane", "janedoe"]
    assert len(found) == len(set(found)) == 12
    assert {"doe.jane", "doej", "doe", "jane_doe", "j.doe", "janed"} <= set(found)


def test_scores_are_probabilities_in_descending_order() -> None:
    parts = name_parts("Jane Doe")
    assert parts is not None
    ranked = candidates(parts, "acme.com", limit=50)
    scores = [c.score for c in ranked]
    assert scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1.0) < 1e-9  # every way of writing the name is among them


@pytest.mark.parametrize(
    ("name", "expected_first"),
    [
        ("Doe, Jane", "jane.doe"),
        ("Dr. Jane Doe PhD", "jane.doe"),
        ("JANE DOE", "jane.doe"),
        ('John "Jack" Smith', "john.smith"),
        ("Conor O'Brien", "conor.obrien"),
        ("王伟", "wei.wang"),  # family name first, unspaced
    ],
)
def test_names_are_split_and_cleaned(name: str, expected_first: str) -> None:
    assert locals_for(name)[0] == expected_first


def test_a_single_name_gives_only_first_name_patterns() -> None:
    assert locals_for("Madonna") == ["madonna"]


def test_nothing_usable_gives_none() -> None:
    assert name_parts("   ") is None
    assert name_parts("!!! ???") is None


# -- transliteration ----------------------------------------------------------------------------


def test_german_umlauts_get_both_spellings_and_german_domains_prefer_expanded() -> None:
    at_de = locals_for("Jürgen Müller", "firma.de")
    at_com = locals_for("Jürgen Müller", "acme.com")
    assert {"juergen.mueller", "jurgen.muller"} <= set(at_de)
    assert at_de[0] == "juergen.mueller"
    assert at_com[0] == "jurgen.muller"
    assert "juergen.mueller" in at_com[:4]


@pytest.mark.parametrize(
    ("name", "plain", "expanded"),
    [
        ("Søren Kierkegaard", "soren.kierkegaard", "soeren.kierkegaard"),
        ("Åsa Lind", "asa.lind", "aasa.lind"),
        ("Ærø Hansen", "aero.hansen", "aeroe.hansen"),
        ("Björn Öztürk", "bjorn.ozturk", "bjoern.oeztuerk"),
    ],
)
def test_scandinavian_and_other_spellings(name: str, plain: str, expanded: str) -> None:
    at_se = locals_for(name, "bolag.se")
    assert at_se[0] == plain  # Nordic companies mostly drop the ring and the slash
    assert expanded in at_se


def test_eszett_is_ss_in_both_styles() -> None:
    assert locals_for("Johann Strauß")[0] == "johann.strauss"


def test_accents_without_an_expanded_form_give_one_spelling() -> None:
    parts = name_parts("José Álvarez")
    assert parts is not None
    assert not parts.has_styles
    assert locals_for("José Álvarez")[0] == "jose.alvarez"


# -- compound surnames --------------------------------------------------------------------------


def test_particle_surnames_are_joined_or_dropped() -> None:
    found = locals_for("Jan van der Berg", "bedrijf.nl")
    assert found[0] == "jan.vanderberg"
    assert "jan.berg" in found[:4]
    assert "jan.van" not in found and "jvan" not in found
    assert not any("van.der" in local for local in found)


def test_hyphenated_surnames() -> None:
    found = locals_for("Anna Smith-Jones")
    assert {"anna.smithjones", "anna.smith-jones", "anna.smith"} <= set(found)


def test_hyphenated_first_names() -> None:
    found = locals_for("Jean-Pierre Dupont")
    assert {"jean-pierre.dupont", "jeanpierre.dupont", "jdupont"} <= set(found)


def test_particle_inside_a_hyphenated_surname_is_not_a_surname() -> None:
    found = locals_for("Omar al-Hassan")
    assert "omar.al" not in found
    assert {"omar.alhassan", "omar.hassan"} <= set(found)


# -- learning -----------------------------------------------------------------------------------


def test_one_known_address_reorders_its_domain_only() -> None:
    book = PatternBook()
    assert book.learn("John Smith", "jsmith@acme.com")
    assert locals_for("Jane Doe", "acme.com", book)[0] == "jdoe"
    assert locals_for("Jane Doe", "other.com", book)[0] == "jane.doe"


def test_many_domains_shift_the_global_picture() -> None:
    book = PatternBook()
    for i in range(40):
        book.learn("John Smith", f"jsmith@company{i}.com")
    # A domain never seen now also leads with {f}{last}.
    assert locals_for("Jane Doe", "unseen.com", book)[0] == "jdoe"


def test_conflicting_evidence_follows_the_majority() -> None:
    book = PatternBook()
    book.learn("John Smith", "john.smith@acme.com")
    book.learn("Ann Lee", "alee@acme.com")
    book.learn("Bob Ray", "bray@acme.com")
    assert locals_for("Jane Doe", "acme.com", book)[:2] == ["jdoe", "jane.doe"]


def test_transliteration_style_is_learned() -> None:
    book = PatternBook()
    book.learn("Jürgen Müller", "juergen.mueller@acme.com")
    assert locals_for("Björn Öztürk", "acme.com", book)[0] == "bjoern.oeztuerk"
    assert locals_for("Björn Öztürk", "other.com", book)[0] == "bjorn.ozturk"


def test_surname_form_is_learned() -> None:
    book = PatternBook()
    book.learn("Jan van der Berg", "jan.berg@bedrijf.nl")
    assert locals_for("Piet de Vries", "bedrijf.nl", book)[0] == "piet.vries"
    assert locals_for("Piet de Vries", "ander.nl", book)[0] == "piet.devries"


def test_an_address_without_a_name_teaches_its_shape() -> None:
    book = PatternBook()
    assert book.learn(None, "j.doe@shape.com")
    assert locals_for("Ann Lee", "shape.com", book)[0] == "a.lee"
    assert not book.learn(None, "info2024@shape.com")  # digits: no pattern


def test_addresses_that_match_no_pattern_teach_nothing() -> None:
    book = PatternBook()
    assert not book.learn("Jane Doe", "sales@acme.com")
    assert not book.learn("Jane Doe", "not an address")
    assert book.known_domains() == 0
    assert locals_for("Jane Doe", "acme.com", book)[0] == "jane.doe"


def test_plus_tags_and_case_are_ignored_when_learning() -> None:
    book = PatternBook()
    assert book.learn("John Smith", "JSmith+crm@Acme.com")
    assert locals_for("Jane Doe", "acme.com", book)[0] == "jdoe"


# -- domains ------------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["gmail.com", "GMAIL.COM", "yahoo.co.uk", "outlook.com",
                                    "gmx.de", "web.de", "proton.me", "icloud.com", "mail.ru"])
def test_free_mail_providers_are_recognised(domain: str) -> None:
    assert is_free_mail(domain)


@pytest.mark.parametrize("domain", ["acme.com", "google.com", "microsoft.com", "siemens.de"])
def test_company_domains_are_not_free_mail(domain: str) -> None:
    assert not is_free_mail(domain)


def test_lead_domain_precedence_and_free_mail() -> None:
    assert lead_domain(Lead("Jane Doe", "Acme", domain="https://www.acme.co.uk/x")).domain == (
        "acme.co.uk"
    )
    assert lead_domain(Lead("Jane Doe", "acme.com")).source == "company"
    choice = lead_domain(Lead("Jane Doe", "Acme", email="jane@gmail.com"))
    assert (choice.domain, choice.free_mail) == (None, "gmail.com")
    choice = lead_domain(Lead("Jane Doe", domain="gmail.com", email="jane@acme.io"))
    assert (choice.domain, choice.source, choice.free_mail) == ("acme.io", "email", "gmail.com")
    assert lead_domain(Lead("Jane Doe", "Acme")).domain is None


def test_company_name_guesses() -> None:
    assert company_domain_guesses("Acme, Inc.")[0] == "acme.com"
    german = company_domain_guesses("Acme Widgets GmbH")
    assert german[:3] == ["acmewidgets.de", "acmewidgets.at", "acmewidgets.com"]
    assert "acme-widgets.de" in german
    assert company_domain_guesses("Acme S.A.R.L.")[0] == "acme.fr"
    assert company_domain_guesses("Acme Ltd")[0] == "acme.co.uk"
    assert "gmail.com" not in company_domain_guesses("Gmail")
    assert len(company_domain_guesses("Some Very Long Company Name Here")) <= 8


# -- consent ------------------------------------------------------------------------------------


def test_probing_is_off_by_default(tmp_path: Path) -> None:
    assert not smtp_probe_enabled({}, path=tmp_path / "consent")


def test_consent_file_is_private_and_switches_probing_on(tmp_path: Path) -> None:
    path = tmp_path / "config" / "lead_finder" / "smtp-probe-consent"
    written = enable_smtp_probe(path=path)
    assert written == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert smtp_probe_enabled({}, path=path)
    assert not smtp_probe_enabled({"LEAD_FINDER_SMTP_PROBE": "0"}, path=path)
    assert disable_smtp_probe(path=path)
    assert not disable_smtp_probe(path=path)
    assert not smtp_probe_enabled({}, path=path)


@pytest.mark.parametrize(("value", "enabled"), [("1", True), ("yes", True), ("TRUE", True),
                                                ("0", False), ("off", False), ("", False),
                                                ("maybe", False)])
def test_environment_switch(tmp_path: Path, value: str, enabled: bool) -> None:
    assert smtp_probe_enabled({"LEAD_FINDER_SMTP_PROBE": value}, path=tmp_path / "none") is enabled


def test_default_consent_location_follows_the_user_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("LEAD_FINDER_SMTP_PROBE", raising=False)
    assert not smtp_probe_enabled()
    path = enable_smtp_probe()
    assert path.is_relative_to(tmp_path)
    assert smtp_probe_enabled()


def test_warning_says_what_probing_risks() -> None:
    text = SMTP_PROBE_WARNING.lower()
    for words in ("port 25", "block lists", "without sending any message", "sixtyfour_api_key"):
        assert words in text


def test_every_documented_reason_is_explained() -> None:
    for reason in ("verified", "unverified", "catch_all", "greylisted", "temp_error",
                   "policy_block", "timeout", "smtp_unreachable", "no_mx", "null_mx",
                   "nxdomain", "dns_error", "no_domain", "personal_not_supported", "rejected",
                   "rcpt_limit", "free_mail_domain", "no_name"):
        assert REASONS[reason]


def test_an_address_is_counted_once_however_often_it_is_seen() -> None:
    from lead_finder.engine.candidates import PatternBook

    book = PatternBook()
    assert book.learn("Jane Doe", "jane.doe@acme.com")
    once = book.weights("acme.com")
    for _ in range(5):  # the same rows come back run after run
        assert not book.learn("Jane Doe", "Jane.Doe@acme.com ")
    assert book.weights("acme.com") == once
    assert book.learn("John Smith", "john.smith@acme.com")  # a new person still counts
    assert book.weights("acme.com") != once
