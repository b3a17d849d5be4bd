"""Django's test client with the fast lane in front, as loyalty.wsgi serves requests.

Every test that calls the EAI API or a partner balance read through the `client` fixture goes
through the lane first (tests/conftest.py): the lane's answers are held to what those tests
expect of the views, and a route that raises fails the test instead of being logged.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import HttpResponse
from django.test import Client
from django.test.client import ClientHandler

from loyalty.fast_lane import FastLane
from loyalty.wsgi import application

DECLINED = object()


@contextmanager
def connections_left_alone():
    """As Django's test client does around a request: the request signals do not check (and
    close) the test's database connection, which is in the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


class StrictFastLane(FastLane):
    def route_failed(self, route, match):
        raise  # the route's exception: route_failed is called from its except block


class FastLaneClientHandler(ClientHandler):
    def __call__(self, environ):
        # Built per request: tests change settings between requests.
        lane = StrictFastLane(lambda environ, start_response: DECLINED, application.routes)
        reply = {}

        def start_response(status, headers):
            reply["status"], reply["headers"] = status, headers

        with connections_left_alone():
            answered = lane(environ, start_response)
        if answered is DECLINED:
            return super().__call__(environ)
        response = HttpResponse(b"".join(answered), status=int(reply["status"].split()[0]))
        for name, value in reply["headers"]:
            response[name] = value
        response.wsgi_request = WSGIRequest(environ)
        response.answered_by_fast_lane = True
        return response


class FastLaneClient(Client):
    def __init__(self, enforce_csrf_checks=False, **kwargs):
        super().__init__(enforce_csrf_checks, **kwargs)
        self.handler = FastLaneClientHandler(enforce_csrf_checks)


def answer(response) -> tuple:
    """What a caller sees of a response: status, headers (by lower-case name), body."""
    headers = {name.lower(): value for name, value in response.items()}
    return response.status_code, headers, response.content


def answered_by_lane(response) -> bool:
    return getattr(response, "answered_by_fast_lane", False)
