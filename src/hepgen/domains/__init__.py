"""Kinds of data: one sub-package each, registered by kind (see :mod:`hepgen.domains.base`).

Importing this package registers every built-in kind.  Adding a kind: a new sub-package
``hepgen/domains/<kind>/`` whose ``__init__`` ends with ``DOMAIN = register_domain(...)``,
and its import line below.
"""

from hepgen.domains import anomaly, events, jets, showers, tabular
from hepgen.domains.base import (
    Domain,
    TrainedGenerator,
    call_with_options,
    check_kind,
    domain_of_checkpoint,
    domain_of_data,
    domain_of_file,
    get_domain,
    kinds,
    register_domain,
)

__all__ = [
    "anomaly",
    "Domain",
    "TrainedGenerator",
    "call_with_options",
    "check_kind",
    "domain_of_checkpoint",
    "domain_of_data",
    "domain_of_file",
    "get_domain",
    "events",
    "jets",
    "kinds",
    "register_domain",
    "showers",
    "tabular",
]
