"""The ids of a worker's message on every log line written while it is processed
(service/log_ids.py): the inbox event, the activity or the sync job its actor is named for.

A dramatiq middleware, so dramatiq's own lines about the message (a failure, a skip) carry
them too. Each worker thread processes one message at a time in its own context, so the
hooks before and after a message set and clear that thread's ids.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from service.log_ids import replace_log_ids
from service.messaging import HYDRATE_ACTIVITY, PROCESS_EVENT, RUN_SYNC_JOB

# The id each actor's first argument is.
_ID_OF_ACTOR = {
    PROCESS_EVENT: "inbox_event_id",
    HYDRATE_ACTIVITY: "activity_id",
    RUN_SYNC_JOB: "job_id",
}


class MessageLogIds(dramatiq.Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        name = _ID_OF_ACTOR.get(message.actor_name)
        args = message.args
        replace_log_ids(**({name: args[0]} if name is not None and args else {}))

    def after_process_message(self, broker: dramatiq.Broker, message: Any, **_: Any) -> None:
        replace_log_ids()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        replace_log_ids()


def install(broker: dramatiq.Broker) -> None:
    """Add the middleware to `broker`, once."""
    if not any(isinstance(m, MessageLogIds) for m in broker.middleware):
        broker.add_middleware(MessageLogIds())
