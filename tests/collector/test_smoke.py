from tests.factories import FakeWorker


def test_it_accepts_a_heartbeat_from_an_enrolled_worker(client):
    worker = FakeWorker()
    assert worker.enroll(client).status_code == 201
    response = worker.beat(client)
    assert response.status_code == 200, response.json
    assert response.json["action"] == "opened"
    assert (
        client.get(f"/workers/{worker.wallet}/containers").json["containers"][0]["containerName"]
        == "web"
    )
