import cocoon.chain as chain


def test_public_api_is_pinned():
    assert sorted(chain.__all__) == sorted(
        name
        for name in dir(chain)
        if not name.startswith("_")
        and name
        not in {
            "address",
            "api",
            "settings",
            "code",
            "errors",
            "litechain",
            "localchain",
            "messages",
            "network",
            "payments",
            "pricing",
            "wallet",
            "_tvmconfig",
        }
    )
    for name in chain.__all__:
        assert getattr(chain, name) is not None
