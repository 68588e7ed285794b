"""Generative model families behind one interface (see :mod:`hepgen.models.base`)."""

from hepgen.models.anomaly import DenseAutoencoder, DenseVAE
from hepgen.models.base import MODEL_FAMILIES, GenerativeModel, build_model, register
from hepgen.models.diffusion import ConditionalFlowMatching
from hepgen.models.epic import JetFlowMatching
from hepgen.models.epic_gan import JetGAN
from hepgen.models.flow import CaloFlow, ConditionalFlow
from hepgen.models.gan import GAN
from hepgen.models.vae import ConditionalVAE

__all__ = ["DenseAutoencoder", "DenseVAE", "GenerativeModel", "ConditionalFlow", "CaloFlow", "ConditionalFlowMatching", "JetFlowMatching", "JetGAN", "ConditionalVAE", "GAN", "MODEL_FAMILIES", "build_model", "register"]
