"""messaging's models, one module per subject; every model and helper is importable from here.

provisioning: Wavix accounts, webhook secrets, numbers, 10DLC, 3CX trunks · senders: what each country accepts,
sender IDs, their registrations and documents · traffic: messages, deliveries, opt-outs, idempotent requests,
the daily rollup · inbox: the webhook inbox · common: E.164 numbers and masked webhook URLs.

Validation lives in the models so the admin and the API share it. The audit trail is tenants.models.AuditEvent.
"""

from messaging.models.common import IllegalTransition, country_of, hostname_validator, masked_url, to_e164, url_shown_to
from messaging.models.inbox import WebhookEvent
from messaging.models.provisioning import (
    PhoneNumber,
    ProviderKey,
    TenDLCRegistration,
    Trunk,
    WavixAccount,
    WebhookSecret,
    secret_hash,
)
from messaging.models.relay import PartitionLeases, RelayPartition, relay_partition, values_update
from messaging.models.senders import (
    ALPHANUMERIC_ALLOWED,
    CountryRule,
    PrivateStorage,
    RegistrationDocument,
    RegistrationEvent,
    SenderID,
    SenderIDCountry,
    alphanumeric_problems,
)
from messaging.models.traffic import DailyMessageCount, Delivery, IdempotentRequest, Message, OptOut

__all__ = [
    "PartitionLeases",
    "RelayPartition",
    "relay_partition",
    "values_update",
    "ALPHANUMERIC_ALLOWED",
    "CountryRule",
    "DailyMessageCount",
    "Delivery",
    "IdempotentRequest",
    "IllegalTransition",
    "Message",
    "OptOut",
    "PhoneNumber",
    "PrivateStorage",
    "ProviderKey",
    "RegistrationDocument",
    "RegistrationEvent",
    "SenderID",
    "SenderIDCountry",
    "TenDLCRegistration",
    "Trunk",
    "WavixAccount",
    "WebhookEvent",
    "WebhookSecret",
    "alphanumeric_problems",
    "country_of",
    "hostname_validator",
    "masked_url",
    "secret_hash",
    "to_e164",
    "url_shown_to",
]
