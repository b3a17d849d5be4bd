"""DRF fields the API contracts share: a JSON value of the declared type, as sent.

DRF's own CharField turns 42 into "42" and its IntegerField takes "12", 12.0 and true; a
partner's wrong type is a bug to report (400 naming the field), not a value to guess.
"""

from __future__ import annotations

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A JSON string: not 42."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a string of digits, not 10.0, not true."""

    def to_internal_value(self, data):
        # bool is an int in Python, and true points are a bug, not one point.
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)
