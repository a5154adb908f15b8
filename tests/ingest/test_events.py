import pytest
from pydantic import ValidationError

from service.ingest.events import (
    Deauthorize,
    DeleteActivity,
    Hydrate,
    Ignore,
    WebhookEvent,
    plan_event,
)

ACTIVITY = 16181809559
OWNER = 134815


@pytest.mark.parametrize("aspect", ["create", "update"])
def test_activity_create_and_update_hydrate(aspect: str) -> None:
    action = plan_event("activity", aspect, ACTIVITY, OWNER, {}, owner_connected=True)

    assert action == Hydrate(ACTIVITY)


def test_activity_delete_deletes() -> None:
    action = plan_event("activity", "delete", ACTIVITY, OWNER, {}, owner_connected=True)

    assert action == DeleteActivity(ACTIVITY)


@pytest.mark.parametrize("authorized", ["false", False])
def test_deauthorization_purges_whether_false_is_a_string_or_a_boolean(
    authorized: object,
) -> None:
    updates = {"authorized": authorized}

    action = plan_event("athlete", "update", OWNER, OWNER, updates, owner_connected=True)

    assert action == Deauthorize(OWNER)


def test_an_unknown_owner_is_ignored_without_any_work() -> None:
    action = plan_event("activity", "create", ACTIVITY, OWNER, {}, owner_connected=False)

    assert isinstance(action, Ignore)


def test_an_athlete_update_that_is_not_a_deauthorization_is_ignored() -> None:
    updates = {"authorized": "true"}

    action = plan_event("athlete", "update", OWNER, OWNER, updates, owner_connected=True)

    assert isinstance(action, Ignore)


def test_unknown_object_types_are_ignored() -> None:
    action = plan_event("club", "create", 1, OWNER, {}, owner_connected=True)

    assert isinstance(action, Ignore)


def test_null_updates_read_as_empty() -> None:
    event = WebhookEvent.model_validate(
        {
            "object_type": "activity",
            "object_id": ACTIVITY,
            "aspect_type": "create",
            "owner_id": OWNER,
            "subscription_id": 1,
            "event_time": 1516126040,
            "updates": None,
        }
    )

    assert event.updates == {}


@pytest.mark.parametrize("bad_id", ["12", 1.5, True, -1, 2**63])
def test_ids_must_be_int64_integers(bad_id: object) -> None:
    with pytest.raises(ValidationError) as error:
        WebhookEvent.model_validate(
            {
                "object_type": "activity",
                "object_id": bad_id,
                "aspect_type": "create",
                "owner_id": OWNER,
                "subscription_id": 1,
                "event_time": 1516126040,
            }
        )

    assert error.value.errors()[0]["loc"] == ("object_id",)
