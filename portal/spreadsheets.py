"""CSV cells a spreadsheet opens safely: the one rule every CSV the portal writes (logs, exports, usage) follows."""

import re


def spreadsheet_safe(value):
    """Keep a spreadsheet from running a cell as a formula: texts come from strangers' phones, names from anyone who
    may name a tenant.

    E.164 numbers start with + legitimately and stay as they are.
    """
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        if not re.fullmatch(r"\+\d{1,15}", value):
            return "'" + value
    return value
