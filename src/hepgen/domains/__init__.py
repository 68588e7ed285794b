"""Kinds of data: one sub-package each, registered by kind (see :mod:`hepgen.domains.base`)."""

from hepgen.domains.base import (
    Domain,
    TrainedGenerator,
    check_kind,
    domain_of_checkpoint,
    domain_of_data,
    domain_of_file,
    get_domain,
    kinds,
    register_domain,
)

__all__ = [
    "Domain",
    "TrainedGenerator",
    "check_kind",
    "domain_of_checkpoint",
    "domain_of_data",
    "domain_of_file",
    "get_domain",
    "kinds",
    "register_domain",
]
