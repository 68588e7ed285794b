"""Kinds of data: one sub-package each, registered by kind (see :mod:`hepgen.domains.base`).

Importing this package declares every built-in kind; a kind's sub-package is imported the
first time the kind is needed (:func:`hepgen.domains.base.declare_domain`).  Adding a kind: a
new sub-package ``hepgen/domains/<kind>/`` whose ``__init__`` ends with
``DOMAIN = register_domain(...)``, and its ``declare_domain`` line below.
"""

from hepgen.domains.base import (
    Domain,
    TrainedGenerator,
    call_with_options,
    check_kind,
    declare_domain,
    domain_of_checkpoint,
    domain_of_data,
    domain_of_file,
    get_domain,
    kinds,
    register_domain,
)

declare_domain("showers", "hepgen.domains.showers", "hepgen.data.formats:ShowerData,hepgen.data.chunked:ShowerFileSet")
declare_domain("jets", "hepgen.domains.jets", "hepgen.data.jets:JetData")
declare_domain("events", "hepgen.domains.events", "hepgen.data.events:EventImages")
declare_domain("tabular", "hepgen.domains.tabular", "hepgen.data.tabular:TabularData")
declare_domain("l1", "hepgen.domains.anomaly", "hepgen.data.l1:L1Events")

__all__ = [
    "Domain",
    "TrainedGenerator",
    "call_with_options",
    "check_kind",
    "declare_domain",
    "domain_of_checkpoint",
    "domain_of_data",
    "domain_of_file",
    "get_domain",
    "kinds",
    "register_domain",
]
