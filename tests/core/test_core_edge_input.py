"""Input at its edges from head office (signed bundles and grants whose times fall off the
calendar, a published account whose hash this terminal could not check) and from the
counter (an unknown fill, a scanner stuck in a search box, text that is not text, a list
position typed as a superscript): a coded error, never a raw exception."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pharmacy import users
from pharmacy.errors import BadInput, PharmosError
from pharmacy.store import Store
from terminal.counter import Counter


@pytest.fixture
def counter(stocked: Store) -> Iterator[Counter]:
    users.add_user(stocked, "paula", "Paula", "pharmacist", "2580")
    d = stocked.data_dir
    stocked.close()
    c = Counter.open(str(d))
    c.login("paula", "2580")
    yield c
    c.close()


def test_policy_bundle_whose_offline_window_ends_after_9999(stocked: Store) -> None:
    from pharmacy.canonical import canonical_json
    from policy_cache.install import install_bundle
    from policy_cache.trust import trust_key
    from tests.policy_cache.policy_support import hq_key, signed_bundle

    key = hq_key()
    trust_key(stocked, key.public_pem())
    doc = json.loads(signed_bundle())
    manifest = dict(doc["manifest"], key_id=key.key_id,
                    offline_until="9999-12-31T23:59:59-05:00")  # "never expires"
    doc = {**doc, "manifest": manifest, "signature": {
        "alg": "ed25519", "key_id": key.key_id, "sig": key.sign(canonical_json(manifest).encode())}}
    with pytest.raises(PharmosError) as e:
        install_bundle(stocked, canonical_json(doc).encode())
    assert e.value.code == "BUNDLE_MALFORMED"


def test_allowances_valid_until_before_year_1(store: Store) -> None:
    from policy_cache.allowances import grant_allowances

    with pytest.raises(BadInput) as e:
        grant_allowances(store, {"per_day": {"CII": 1},
                                 "valid_until": "0001-01-01T00:00:00+05:00"})
    assert e.value.code == "BAD_GRANT"


@pytest.mark.parametrize("secret_hash", [
    "scrypt$3$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",  # n not a power of 2
    "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",  # 1 TiB to check
    "scrypt$16384$8$1$!!!$AAAAAAAAAAAAAAAAAAAAAA==",
    "bcrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAA==",
])
def test_published_account_whose_hash_cannot_be_checked(store: Store, secret_hash: str) -> None:
    pub = users.user_publication("nina", "Nina", "technician", "7391", now=store.clock())
    with pytest.raises(BadInput) as e:
        users.install_published_user(store, {**pub, "secret_hash": secret_hash})
    assert e.value.code == "BAD_USER_PUBLICATION"
    assert not users.verify_secret("7391", secret_hash)
    users.install_published_user(store, pub)  # the well-made one installs
    assert users.login(store, "nina", "7391").username == "nina"


def test_counter_input_at_its_edges(counter: Counter) -> None:
    with pytest.raises(PharmosError) as e:
        counter.rx_review("no-such-fill")
    assert e.value.code == "UNKNOWN_FILL"
    for call in (counter.search, counter.batch_ids):
        with pytest.raises(BadInput) as e2:
            call("A" * 60_000)  # a scanner stuck in the search box
        assert e2.value.code == "BAD_SEARCH"
        with pytest.raises(BadInput):
            call("ibu\udcffprofen")
    assert counter.search("ibuprofen") and counter.batch_ids("IB")
    with pytest.raises(PharmosError) as e3:
        counter.login("pa\udcffula", "2580")
    assert e3.value.code == "LOGIN_FAILED"
    with pytest.raises(PharmosError):
        counter.login("paula", "25\udcff80")


def test_a_list_position_must_be_ascii_digits(store: Store) -> None:
    from hardware import config

    with pytest.raises(BadInput) as e:
        config.set_values(store, [("scanners.\u00b2.port", "/dev/ttyACM0")])
    code = e.value.code
    config.set_values(store, [("scanners.0.port", "/dev/ttyACM0")])
    with pytest.raises(BadInput) as e2:
        config.set_values(store, [("scanners.x.port", "/dev/ttyACM0")])
    assert code == e2.value.code  # the same refusal as any other non-number


