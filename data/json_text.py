"""JSON text from files the user gives, with caps on size and nesting.

``json.loads`` recurses once per nesting level, so ``[[[[...]]]]`` 100,000 deep ends in a
RecursionError traceback, and it builds whatever a huge text describes. ``parse_json``
refuses both with one UserError naming the source, before parsing.
"""

import json
import os
import re

from data.errors import UserError

MAX_JSON_BYTES = 1_000_000  # a blueprint or a model's meta is a few kB
MAX_JSON_DEPTH = 100  # a blueprint nests a residual body in a spec in a list: about 10

_TOKEN = re.compile(r'[\[\]{}"\\]')  # the characters that open, close or escape


def parse_json(text, source, max_bytes=MAX_JSON_BYTES, max_depth=MAX_JSON_DEPTH):
    """The value of the JSON ``text``, after checking its size and nesting.

    text:      str (or bytes, decoded as UTF-8).
    source:    str naming where the text comes from (a file, a file's member), for messages.
    max_bytes: int, the largest text accepted, in UTF-8 bytes.
    max_depth: int, the deepest nesting of lists and objects accepted.
    Returns the parsed value. Raises UserError "<source> ..." for text over ``max_bytes``,
    nesting deeper than ``max_depth`` (measured by a linear scan of the brackets outside
    strings, before parsing), bytes that are not UTF-8, and text that is not valid JSON.
    """
    size = len(text) if isinstance(text, bytes) or text.isascii() else len(text.encode())
    if size > max_bytes:
        raise UserError(
            f"{source}: {size} bytes of JSON text, more than the {max_bytes} allowed; "
            "is this the right file?"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{source} is not UTF-8 text ({err})") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise UserError(
            f"{source}: JSON nested {depth} levels deep, more than the {max_depth} allowed"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{source} is not valid JSON ({err})") from None
    except RecursionError:  # a nesting the scan did not see; never a traceback
        raise UserError(f"{source}: JSON nested too deep to read") from None


def read_json_file(path, max_bytes=MAX_JSON_BYTES, max_depth=MAX_JSON_DEPTH):
    """The value of the JSON file ``path``, read with the caps of ``parse_json``.

    path: str or Path. Reads at most ``max_bytes + 1`` bytes, so a huge file (or a device
    such as /dev/zero) is refused without being read in full.
    Returns the parsed value. Raises UserError naming the file for a missing or unreadable
    file and for everything ``parse_json`` refuses.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise UserError(f"{source}: no such file; check the path") from None
    except OSError as err:
        raise UserError(f"{source}: cannot read ({err.strerror or err})") from None
    if len(data) > max_bytes:
        raise UserError(
            f"{source}: more than {max_bytes} bytes of JSON text; is this the right file?"
        )
    return parse_json(data, source, max_bytes, max_depth)


def json_depth(text):
    """The deepest nesting of ``[`` and ``{`` outside JSON strings in ``text`` (0 for a scalar).

    Linear in the length of the text; an unbalanced text is measured as far as it goes.
    """
    depth = deepest = 0
    in_string, escaped_at = False, -1
    for match in _TOKEN.finditer(text):
        at, char = match.start(), match[0]
        if at == escaped_at:  # the character after a backslash in a string
            continue
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
