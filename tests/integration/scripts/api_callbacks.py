"""Callbacks for the developer-API test: append what the pinger calls to a file."""

import json
import os


def _record(kind, uri, value, user_attr):
    with open(user_attr["out"], "a") as out:
        out.write(json.dumps([kind, uri, value, user_attr["tag"], os.getpid()]) + "\n")


def on_state(uri, state, user_attr):
    _record("state", uri, state, user_attr)


def on_response(uri, code, user_attr):
    _record("response", uri, code, user_attr)


def on_state_rtt(uri, state, user_attr, rtt_ms):
    _record("state_rtt", uri, [state, rtt_ms], user_attr)
