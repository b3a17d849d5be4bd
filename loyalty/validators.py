"""Validation shared by the APIs: member identifiers, and text a database column can hold.

Partners identify members by an external id (userId, userid, contactId, user_id). It must not
be personal data: ids travel in URLs, logs and third-party systems, so an e-mail address, a phone
number or a national id number as an id would leak PII everywhere it goes.
"""

import re

from django.core.exceptions import ValidationError

EXTERNAL_ID_MAX_LENGTH = 128

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A phone number: digits with a leading + or with the separators phone numbers are written with.
# Bare digit strings are allowed: customer numbers are often just digits.
_PHONE_RE = re.compile(r"^(\+[\d\s().\-]+|[\d().\-]+[\s().\-][\d\s().\-]+)$")
# National-id shapes: US SSN (123-45-6789), and long all-digit ids of 9-13 digits with optional
# a separator (Nordic personnummer 19900101-1234, many national registries).
_SSN_RE = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_PERSONNUMMER_RE = re.compile(r"^(\d{6}|\d{8})[-+]\d{4}$")
_ALLOWED_CHARS_RE = re.compile(r"^[A-Za-z0-9._:\-]+$")

# What PostgreSQL text cannot hold (a NUL; an unpaired surrogate, which has no UTF-8 form): DRF's
# CharField validators refuse the same.
UNSTORABLE_TEXT_RE = re.compile("[\x00\ud800-\udfff]")


def external_id_problem(value: object) -> str | None:
    """Return why `value` is not acceptable as a member's external id, or None if it is."""
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if len(value) > EXTERNAL_ID_MAX_LENGTH:
        return f"must be at most {EXTERNAL_ID_MAX_LENGTH} characters"
    if "@" in value or _EMAIL_RE.match(value):
        return "must not be an e-mail address (external ids must not contain personal data)"
    digits = re.sub(r"\D", "", value)
    if _SSN_RE.match(value) or _PERSONNUMMER_RE.match(value):
        return "must not be a national id number (external ids must not contain personal data)"
    if _PHONE_RE.match(value) and 7 <= len(digits) <= 15:
        return "must not be a phone number (external ids must not contain personal data)"
    if not _ALLOWED_CHARS_RE.match(value):
        return "may contain only letters, digits and . _ : -"
    return None


def validate_external_id(value: str) -> None:
    problem = external_id_problem(value)
    if problem:
        raise ValidationError(f"externalId {problem}.", code="invalid_external_id")
