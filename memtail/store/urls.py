"""Showing connection URLs to people without their secrets.

A URL can carry a secret in several places: the ``user:pass@`` part of any scheme
(``postgresql://``, ``redis://:pass@``, ``amqp://user:pass@``), query parameters that
psycopg2 and libpq accept (``?password=``, ``?sslpassword=``), and the same keys in a
libpq ``key=value`` string given where a URL was expected. SQLAlchemy's
``render_as_string(hide_password=True)`` masks only the first of them, so every place that
shows a URL (pages, reports, status, errors) goes through :func:`display_url`, and a
driver's message about one goes through :func:`without_secrets`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus

MASK = "***"

# Keys whose value is a credential, in a query string or a libpq key=value string:
# password, sslpassword, passwd, pwd, secret, token, api_key, auth... Masking a harmless
# key that matches (passfile, sslkey: paths) costs a reader little; showing a secret is
# what must never happen.
_SECRET_KEY = r"[\w.-]*(?:pass|pwd|secret|token|key|auth|credential)[\w.-]*"
_VALUE = r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^&;\s#]*"""
_SECRET_PAIR = re.compile(rf"(?i)(?P<key>\b{_SECRET_KEY})(?P<eq>\s*=\s*)(?P<value>{_VALUE})")
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)")


def _passwords(text: str) -> list[tuple[int, int]]:
    """Where the passwords of ``scheme://user:pass@host`` parts of ``text`` are."""
    spans = []
    for match in _SCHEME.finditer(text):
        start = match.end()
        if spans and start < spans[-1][1]:
            continue
        stops = [i for i in (text.find(c, start) for c in "?# \n") if i != -1]
        # The last @ before the query: a password may itself hold an unescaped @ or /.
        at = text.rfind("@", start, min(stops, default=len(text)))
        colon = text.find(":", start, at)
        if at != -1 and colon != -1 and not text.startswith("/", start):
            spans.append((colon + 1, at))
    return spans


def _mask_userinfo(text: str) -> str:
    out, position = [], 0
    for begin, end in _passwords(text):
        out += [text[position:begin], MASK]
        position = end
    return "".join(out) + text[position:]


def display_url(url: object) -> str:
    """``url`` (a string or a SQLAlchemy URL) as it may be shown: every credential it
    carries replaced by ``***``, everything else as given."""
    text = url if isinstance(url, str) else _unmasked(url)
    text = _mask_userinfo(text)
    return _SECRET_PAIR.sub(lambda m: f"{m['key']}{m['eq']}{MASK}", text)


def _unmasked(url: object) -> str:
    # A SQLAlchemy URL renders its password as *** by default; render it whole and mask
    # it here, so that one rule decides what is shown.
    render = getattr(url, "render_as_string", None)
    return render(hide_password=False) if render is not None else str(url)


def secrets_of(url: object) -> list[str]:
    """The credential values ``url`` carries, as given and decoded (longest first)."""
    text = url if isinstance(url, str) else _unmasked(url)
    found = [text[begin:end] for begin, end in _passwords(text)]
    for match in _SECRET_PAIR.finditer(text):
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found.append(value)
    decoded = [d for s in found for d in (unquote(s), unquote_plus(s))]
    return sorted({s for s in found + decoded if s}, key=len, reverse=True)


def without_secrets(message: str, url: object) -> str:
    """``message`` (a driver's error about ``url``, say) with every credential of ``url``
    removed, wherever and however the message quotes it."""
    for secret in secrets_of(url):
        message = message.replace(secret, MASK)
    return display_url(message)
