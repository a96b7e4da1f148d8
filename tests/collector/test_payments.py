"""Payments: uint256 amounts as decimal strings, reading back and listing by creator."""

import pytest

from tests.factories import CREATOR


def test_it_records_a_uint256_payment(client):
    amount = str(2**256 - 1)
    response = client.post("/payments", json={"name": "Nov", "amount": amount, "creator": CREATOR})
    assert response.status_code == 201
    assert response.json["amount"] == amount
    assert client.get(f"/payments/{response.json['id']}").json == response.json
    listed = client.get(f"/payments?creator={CREATOR}").json
    assert listed["total"] == 1 and listed["items"][0]["amount"] == amount
    assert client.get("/payments/999999").status_code == 404


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("amount", [str(2**256), "-1", "007", 5, 1.5, "1e3", ""], ids=str)
def test_an_amount_that_is_no_uint256_string_is_refused(client, amount):
    response = client.post("/payments", json={"name": "x", "amount": amount, "creator": CREATOR})
    assert response.status_code == 400
    assert "amount" in response.json["error"]


@pytest.mark.parametrize("payment_id", [2**31, 2**63, 10**30], ids=str)
def test_an_id_beyond_any_row_is_not_found(client, payment_id):
    # It was a 500 on SQLite, whose driver cannot send an id beyond 64 bits.
    response = client.get(f"/payments/{payment_id}")
    assert response.status_code == 404
    assert response.json["error"] == f"no payment with id {payment_id}"
