"""The error codes: a closed, documented set."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleancut import errors
from cleancut.engine import OPTIONS

DOC = Path(__file__).parents[1] / "docs" / "errors.md"


def test_the_committed_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == errors.reference_markdown(), \
        "docs/errors.md is stale: run scripts/gen-docs"


def test_every_concrete_error_has_its_own_code_and_status() -> None:
    by_code = errors.codes()
    concrete = {cls for cls in by_code.values()}
    assert len({cls.code for cls in concrete if cls is not errors.InvalidParameter}) == \
        len(concrete) - 1  # no two classes share a code
    for cls in concrete:
        assert 400 <= cls.status < 600, cls
        assert cls.title, cls


@pytest.mark.parametrize("group", [errors.InputError, errors.ModelError, errors.ServiceError,
                                   errors.RetryLater])
def test_grouping_classes_have_no_code_and_cannot_be_raised(group: type) -> None:
    assert group not in errors.codes().values()
    with pytest.raises(TypeError, match="groups other errors"):
        group("detail")


def test_retry_later_errors_are_the_ones_that_carry_retry_after() -> None:
    retrying = {cls for cls in errors.codes().values() if issubclass(cls, errors.RetryLater)}
    assert retrying == {errors.RateLimited, errors.Overloaded, errors.NotReady,
                        errors.ShuttingDown}
    assert all(cls.status in (429, 503) for cls in retrying)


def test_every_option_of_the_table_has_its_field_code() -> None:
    for spec in OPTIONS:
        for name in (spec.name, spec.field):
            assert name in errors.PARAMETER_FIELDS, f"add {name!r} to errors.PARAMETER_FIELDS"


def test_a_field_outside_the_set_gets_the_generic_code_but_keeps_its_name() -> None:
    known = errors.InvalidParameter("bgcolor", "bad colour")
    unknown = errors.InvalidParameter("whatever_a_client_sent", "bad")
    assert known.code == "invalid_bgcolor" and known.to_dict()["field"] == "bgcolor"
    assert unknown.code == "invalid_parameter"
    assert unknown.to_dict()["field"] == "whatever_a_client_sent"
    assert set(errors.codes()) >= {known.code, unknown.code}


def test_http_error_keeps_the_status_it_came_with() -> None:
    assert errors.HttpError("not acceptable", 406).status == 406
