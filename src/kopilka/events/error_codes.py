"""Stable codes of the events and webhooks domain's refusals (what integrators match on).

==============================  =============  =========================================
code                            class          when
==============================  =============  =========================================
unknown_event_type              InvalidInput   an event type that is not in the list
                                               (``kopilka.events.catalogue``), in an
                                               endpoint's types or the feed's filter
invalid_event_id                InvalidInput   the feed's ``after`` is not an event id
                                               such as ``evt_42``
invalid_webhook_url             InvalidInput   not an absolute http or https URL with a
                                               host, longer than 500 characters, or
                                               with a user name or password in it
invalid_webhook_endpoint        InvalidInput   another field of an endpoint out of its
                                               rules (the ``field`` parameter names it)
event_not_found                 NotFound       no such event in the tenant
webhook_endpoint_not_found      NotFound       no such endpoint in the tenant
webhook_delivery_not_found      NotFound       no such delivery in the tenant
webhook_endpoint_disabled       Refused        a redelivery to a switched-off endpoint
delivery_not_redeliverable      Refused        a redelivery of a delivery that arrived
==============================  =============  =========================================

A delivery the endpoint refuses or never answers is not an error of any request: it is
kept as ``failed`` with the last status code and error, and may be redelivered.
"""

from __future__ import annotations

from enum import StrEnum


class EventErrorCode(StrEnum):
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    INVALID_EVENT_ID = "invalid_event_id"
    EVENT_NOT_FOUND = "event_not_found"
    INVALID_WEBHOOK_URL = "invalid_webhook_url"
    INVALID_WEBHOOK_ENDPOINT = "invalid_webhook_endpoint"
    WEBHOOK_ENDPOINT_NOT_FOUND = "webhook_endpoint_not_found"
    WEBHOOK_DELIVERY_NOT_FOUND = "webhook_delivery_not_found"
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint_disabled"
    DELIVERY_NOT_REDELIVERABLE = "delivery_not_redeliverable"
