"""JsonFirstNegotiation: DRF's answer, without DRF's parsing for the everyday requests."""

import pytest
from django.test import RequestFactory
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request

from loyalty.negotiation import JsonFirstNegotiation

RENDERER_LISTS = [
    [JSONRenderer()],
    [JSONRenderer(), BrowsableAPIRenderer()],
    [TemplateHTMLRenderer(), JSONRenderer()],
    [BrowsableAPIRenderer(), JSONRenderer()],
]
ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "application/json; indent=4",
    "text/html",
    "text/html, application/json;q=0.9",
    "application/xml",
    "application/*",
]
QUERIES = ["", "commit", "format=json", "format=api", "cursor=abc&limit=5"]


def _answer(negotiation, accept, query, renderers, format_suffix):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(RequestFactory().get(f"/api/v1/x?{query}", **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, format_suffix)
    except Exception as exc:  # DRF's 406 (NotAcceptable), or its 404 for an unknown format
        return type(exc).__name__
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", RENDERER_LISTS, ids=lambda r: "+".join(map(str, r)))
@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("format_suffix", [None, "json"])
def test_the_negotiation_answers_as_drfs_own(renderers, accept, query, format_suffix):
    assert _answer(JsonFirstNegotiation(), accept, query, renderers, format_suffix) == _answer(
        DefaultContentNegotiation(), accept, query, renderers, format_suffix
    )


def test_the_everyday_request_is_answered_without_parsing_the_accept_header(monkeypatch):
    # given DRF's parsing made to fail
    def unparsable(self, request):
        raise AssertionError("parsed")

    monkeypatch.setattr(DefaultContentNegotiation, "get_accept_list", unparsable)

    # then a request without Accept, or with */* or application/json, still gets JSON
    for accept in (None, "*/*", "application/json"):
        assert _answer(JsonFirstNegotiation(), accept, "", [JSONRenderer()], None) == (
            "JSONRenderer",
            "application/json",
        )


def test_without_a_format_override_the_query_string_does_not_matter(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "URL_FORMAT_OVERRIDE": None}
    for query in ("", "format=api"):
        assert _answer(JsonFirstNegotiation(), None, query, [JSONRenderer()], None) == _answer(
            DefaultContentNegotiation(), None, query, [JSONRenderer()], None
        )
