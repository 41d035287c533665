from conftest import Server, new_itwin


def test_create_and_get(server: Server) -> None:
    with server.user() as alice:
        it = new_itwin(alice, number="S-1")
        got = alice.get(f"/itwins/{it['id']}")
        assert got.status_code == 200
        assert got.json()["iTwin"]["number"] == "S-1"
