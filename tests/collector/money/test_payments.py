"""Payments: uint256 amounts as decimal strings, reading back and listing by creator."""

import pytest

from tests.factories import CREATOR


def test_it_records_a_uint256_payment(operator):
    amount = str(2**256 - 1)
    response = operator.post(
        "/payments", json={"name": "Nov", "amount": amount, "creator": CREATOR}
    )
    assert response.status_code == 201
    assert response.json["amount"] == amount
    assert operator.get(f"/payments/{response.json['id']}").json == response.json
    listed = operator.get(f"/payments?creator={CREATOR}").json
    assert listed["total"] == 1 and listed["items"][0]["amount"] == amount
    assert operator.get("/payments/999999").status_code == 404


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "amount", [str(2**256), "-1", "007", 5, 1.5, "1e3", "", "1\n", None], ids=repr
)
def test_an_amount_that_is_no_uint256_string_is_refused(operator, amount):
    response = operator.post("/payments", json={"name": "x", "amount": amount, "creator": CREATOR})
    assert response.status_code == 400
    assert "amount" in response.json["error"]


@pytest.mark.parametrize("payment_id", [2**31, 2**63, 10**30], ids=str)
def test_an_id_beyond_any_row_is_not_found(operator, payment_id):
    # It was a 500 on SQLite, whose driver cannot send an id beyond 64 bits.
    response = operator.get(f"/payments/{payment_id}")
    assert response.status_code == 404
    assert response.json["error"] == f"no payment with id {payment_id}"


def test_payments_are_listed_a_page_at_a_time_with_their_total(operator):
    for n in range(3):
        body = {"name": f"p{n}", "amount": str(n), "creator": CREATOR}
        assert operator.post("/payments", json=body).status_code == 201
    page = operator.get("/payments", query_string={"limit": 2}).json
    # Newest first.
    assert [p["name"] for p in page["items"]] == ["p2", "p1"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    rest = operator.get("/payments", query_string={"limit": 2, "offset": 2}).json
    assert [p["name"] for p in rest["items"]] == ["p0"]
    too_many = operator.get("/payments", query_string={"limit": 201})
    assert too_many.status_code == 400
    assert too_many.json["error"] == "query parameter limit must be from 1 to 200"
