"""DRF content negotiation with the everyday answer worked out without parsing.

Every API here renders JSON only, and nearly every client sends no Accept header, `*/*` or
`application/json`: DRF then always picks the first renderer, after parsing the header into
media types and ordering them by precedence on every request (a few percent of a balance
read's CPU). Those requests get that answer directly; anything else (another Accept, a format
override, a view with other renderers) goes through DRF's negotiation unchanged.
"""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation

_EVERYDAY_ACCEPT = (None, "*/*", "application/json")


def wants_plain_json(meta, override: str | None) -> bool:
    """The request takes JSON as any JSON view renders it: an everyday Accept header and no
    format override (`override`: DRF's URL_FORMAT_OVERRIDE) in the query string."""
    return meta.get("HTTP_ACCEPT") in _EVERYDAY_ACCEPT and not (
        override and override in meta.get("QUERY_STRING", "")
    )


class JsonFirstNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        first = renderers[0] if renderers else None
        if (
            first is not None
            and first.media_type == "application/json"
            and format_suffix is None
            and wants_plain_json(request.META, self.settings.URL_FORMAT_OVERRIDE)
        ):
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
