"""Writes that span models, leave an audit trail or need Wavix or 3CX; the admin, the API and the tasks call these.

Imported by module, never re-exported here, so that a call names the file to open:

- accounts: Wavix accounts, numbers and their relay URLs, webhook secrets, trunks
- senders: sender IDs at Wavix, and their registrations country by country (review, documents, e-mails)
- inbound: webhooks routed to messages, opt-outs, held texts, texts whose webhook never came
- reports: delivery reports and 10DLC statuses applied
- forwarding: deliveries forwarded to 3CX, retried, replayed; trunk health
- outbound: outbound messages validated and queued (the one way in for a text to send); Idempotency-Key
- provider: the portal as 3CX's SMS provider — provider keys, and the texts 3CX POSTs taken in through outbound
- sending: queued messages sent through Wavix exactly once, reconciled, swept
- mirror: texts 3CX sent straight to Wavix, read back from Wavix's log into the message log
- retention: message content purged past each reseller's retention period
- setup, setup_actions: the SMS setup wizard of a trunk (its state; what each step does) — on top of the others

Lower modules never import higher ones: setup* → accounts → inbound → reports, outbound; setup* → senders,
forwarding, sending; provider → outbound; mirror → outbound; reports, sending → forwarding (status
events). Work for a worker is queued through messaging.dispatch only.
"""
