"""JSON from outsiders, read so that no body can turn into a 500: the API's parser and the check it shares with
Wavix's webhooks."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def lone_surrogate_at(value) -> str | None:
    """Where a parsed JSON value holds a lone UTF-16 surrogate ("message_body.text", "media[2]"), or None.

    json.loads turns an unpaired escape such as "\\ud800" into a str that no UTF-8 encoder takes: PostgreSQL refuses
    the row and a UTF-8 response cannot carry it, so each surfaced as a 500 (or a 503 Wavix retries forever). Walked
    without recursion: json.loads accepts nesting deeper than a recursive walk would survive.
    """
    pending = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return _printable(path) or "the body"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else key
                if not _encodes(key):
                    return _printable(child_path)
                pending.append((child_path, child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None


def lone_surrogate_problem(where: str) -> str:
    return f"{where} contains a lone UTF-16 surrogate (an unpaired \\ud800–\\udfff escape): send UTF-8 text."


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _printable(path: str) -> str:
    # The path names a key that may itself hold the surrogate: the answer must not carry it.
    return path.encode("utf-8", "backslashreplace").decode()


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering 400 where DRF's gave a 500: a body nested deeper than Python's recursion limit
    (a few kilobytes of brackets) and a lone UTF-16 surrogate anywhere in it."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        if where := lone_surrogate_at(data):
            raise ParseError(f"JSON parse error - {lone_surrogate_problem(where)}")
        return data
