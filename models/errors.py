"""Errors of the models package, each with a stable code (see ``pharmacy.errors``)."""

from __future__ import annotations

from pharmacy.errors import DomainRefusal, IntegrityFailure


class ModelIncompatible(DomainRefusal):
    """A correctly signed model this terminal cannot run (features, format, input shape)."""

    code = "MODEL_INCOMPATIBLE"


class ModelDowngrade(DomainRefusal):
    """An older bundle than the one installed (a replay of a superseded announcement)."""

    code = "MODEL_DOWNGRADE"


class ModelBelowBaseline(DomainRefusal):
    """Head office: the trained model does not beat the baselines, so it is not shipped."""

    code = "MODEL_BELOW_BASELINE"


class BundleCorrupt(IntegrityFailure):
    """The bundle's files do not match its signed manifest, or the archive is malformed."""

    code = "MODEL_BUNDLE_CORRUPT"
