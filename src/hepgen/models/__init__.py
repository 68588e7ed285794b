"""Generative model families behind one interface (see :mod:`hepgen.models.base`)."""

from hepgen.models.anomaly import DenseAutoencoder, DenseVAE
from hepgen.models.base import (
    MODEL_FAMILIES,
    GenerativeModel,
    build_model,
    check_family_kind,
    register,
    with_derived_hparams,
)
from hepgen.models.dcgan import EventDCGAN, EventWGANGP
from hepgen.models.epic import JetFlowMatching
from hepgen.models.epic_gan import JetGAN
from hepgen.models.events_fm import EventFlowMatching
from hepgen.models.flow import CaloFlow, ConditionalFlow
from hepgen.models.flow_matching import ConditionalFlowMatching
from hepgen.models.gan import GAN
from hepgen.models.jet_student import JetStudent
from hepgen.models.jet_transformer import JetTransformerFlowMatching
from hepgen.models.student import FlowStudent
from hepgen.models.tabular import TabularFlow, TabularWGAN
from hepgen.models.vae import ConditionalVAE

__all__ = [
    "MODEL_FAMILIES",
    "CaloFlow",
    "ConditionalFlow",
    "ConditionalFlowMatching",
    "ConditionalVAE",
    "DenseAutoencoder",
    "DenseVAE",
    "EventDCGAN",
    "EventFlowMatching",
    "EventWGANGP",
    "FlowStudent",
    "GAN",
    "GenerativeModel",
    "JetFlowMatching",
    "JetGAN",
    "JetStudent",
    "JetTransformerFlowMatching",
    "TabularFlow",
    "TabularWGAN",
    "build_model",
    "check_family_kind",
    "register",
    "with_derived_hparams",
]
