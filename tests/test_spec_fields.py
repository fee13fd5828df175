"""The JobSpec's fields are defined once (jobd.core.models): the API's bodies, the store's encoding
and the engine's edit follow them."""

from __future__ import annotations

from dataclasses import fields

from jobd.core.models import SPEC_FIELDS, JobSpec
from jobd.service.api import EditBody, SubmitBody
from jobd.store import spec_from_json, spec_to_json


def test_bodies_follow_the_spec() -> None:
    assert set(SubmitBody.model_fields) == set(SPEC_FIELDS.names) - {"schedule"}
    assert set(EditBody.model_fields) == SPEC_FIELDS.editable


def test_every_field_survives_the_store_encoding() -> None:
    values = {
        "workflow": "w",
        "name": "n",
        "params": {"a": [1]},
        "start_at": 5.0,
        "end_at": 6.0,
        "preroll": 1.5,
        "postroll": 2.5,
        "priority": 3,
        "timeout": 7.0,
        "lock_timeout": 8.0,
        "schedule": "s",
    }
    values.update({name: ("x",) for name in SPEC_FIELDS.lists})
    spec = JobSpec(**values)
    assert {f.name for f in fields(JobSpec)} - set(values) == {"state"}
    assert spec_from_json(spec_to_json(spec)) == spec
    assert spec_from_json(spec_to_json(JobSpec("w"))) == JobSpec("w")
