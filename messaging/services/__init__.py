"""Writes that span models, leave an audit trail or need Wavix or 3CX; the admin, the API and the tasks call these.

- wavix_sync: accounts, numbers, trunks and sender IDs (keys checked, numbers synced and wired, registrations)
- relay: inbound webhooks routed and forwarded to 3CX, delivery reports, replays, reconciliation
- sending: outbound messages validated, queued fairly, sent exactly once
- registrations: sender-ID registrations per country: review, documents, timeline, e-mails
- setup: the SMS setup wizard of a trunk (imported as a module: messaging.services.setup)
"""

from messaging.services.registrations import *  # noqa: F403
from messaging.services.registrations import __all__ as _registrations
from messaging.services.relay import *  # noqa: F403
from messaging.services.relay import __all__ as _relay
from messaging.services.sending import *  # noqa: F403
from messaging.services.sending import __all__ as _sending
from messaging.services.wavix_sync import *  # noqa: F403
from messaging.services.wavix_sync import __all__ as _wavix_sync

__all__ = [*_wavix_sync, *_relay, *_sending, *_registrations]
