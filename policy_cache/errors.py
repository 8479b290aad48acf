"""Errors of the policy-bundle lifecycle. Each carries a stable code; none is ever swallowed."""

from __future__ import annotations

from pharmacy.errors import BadInput, IntegrityFailure


class BundleInvalid(IntegrityFailure):
    """A bundle that must not be used: malformed, tampered, foreign-signed, expired, unknown
    format, or with a policy that fails the schema. The last good bundle stays active."""

    code = "BUNDLE_INVALID"


class BundleMalformed(BundleInvalid):
    code = "BUNDLE_MALFORMED"


class BundleFormatUnsupported(BundleInvalid):
    code = "BUNDLE_FORMAT_UNSUPPORTED"


class BundleUnsigned(BundleInvalid):
    code = "BUNDLE_UNSIGNED"


class BundleTampered(BundleInvalid):
    code = "BUNDLE_TAMPERED"


class BundleExpired(BundleInvalid):
    code = "BUNDLE_EXPIRED"


class BundleStale(BundleInvalid):
    """Older than the bundle already installed (a replayed or out-of-order bundle)."""

    code = "BUNDLE_STALE"


class PolicyInvalid(BundleInvalid):
    """A policy that does not parse or fails validation against the bundle's schema."""

    code = "BUNDLE_POLICY_INVALID"


class DataInvalid(BundleInvalid):
    code = "BUNDLE_DATA_INVALID"


class PolicyInputError(BadInput):
    code = "POLICY_BAD_INPUT"
