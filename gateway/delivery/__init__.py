"""Delivery to the platform: how minimised changes leave the gateway.

`feed` is the pull feed the platform pages through. Push deliveries (signed webhooks,
SCIM push) will sit beside it; all of them read the same event outbox, check the
instruction before every page, and record every page on the ledger.
"""
