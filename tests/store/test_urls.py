"""Every form a credential takes in a URL is masked wherever memtail shows one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from memtail.store.engine import describe_database
from memtail.store.urls import display_url, secrets_of, without_secrets

SECRET = "sekrit"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql+psycopg2://u@h:5432/db?password={SECRET}",
            "postgresql+psycopg2://u@h:5432/db?password=***",
        ),
        (f"postgresql://u:{SECRET}@h/db", "postgresql://u:***@h/db"),
        # An unescaped @ or / in the password: the host begins after the last @.
        (f"postgresql://u:a@b/{SECRET}@h/db", "postgresql://u:***@h/db"),
        (
            f"postgresql://u@h/db?sslmode=require&sslpassword={SECRET}&application_name=x",
            "postgresql://u@h/db?sslmode=require&sslpassword=***&application_name=x",
        ),
        (f"postgresql://u@h/db?PassWord={SECRET}", "postgresql://u@h/db?PassWord=***"),
        (f"redis://:{SECRET}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (f"redis://h:6379/0?password={SECRET}", "redis://h:6379/0?password=***"),
        (f"amqp://user:{SECRET}@rabbit//", "amqp://user:***@rabbit//"),
        # A libpq key=value string given where a URL belongs, quoted or not.
        (f"host=h password='{SECRET} x' user=u", "host=h password=*** user=u"),
        (f"host=h password={SECRET}", "host=h password=***"),
    ],
)
def test_every_credential_form_is_masked(url: str, shown: str) -> None:
    assert display_url(url) == shown
    assert SECRET not in display_url(url)


@pytest.mark.parametrize(
    "url",
    ["sqlite:///runs/memtail.db", "postgresql+psycopg2://u@h:5432/db?sslmode=require", "x://"],
)
def test_a_url_without_credentials_is_shown_as_given(url: str) -> None:
    assert display_url(url) == url


def test_a_sqlalchemy_url_is_masked_by_the_same_rule() -> None:
    url = sa.engine.make_url(f"postgresql+psycopg2://u:{SECRET}1@h/db?password={SECRET}2")
    assert display_url(url) == "postgresql+psycopg2://u:***@h/db?password=***"
    # The names commands and pages give a database.
    assert describe_database(url) == ("postgresql+psycopg2://u:***@h/db?password=***", None)
    where, _ = describe_database(f"postgresql+psycopg2://u@h/db?password={SECRET}")
    assert SECRET not in where


def test_a_drivers_message_loses_the_secrets_of_its_url_in_every_spelling() -> None:
    url = "redis://:p%40ss@h:6379/0?sslpassword=other"
    assert secrets_of(url) == ["p%40ss", "other", "p@ss"]
    message = "auth failed for p@ss (given as p%40ss); sslpassword=other rejected"
    cleaned = without_secrets(message, url)
    assert cleaned == "auth failed for *** (given as ***); sslpassword=*** rejected"
