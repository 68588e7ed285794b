"""hepgen: deep generative surrogates for particle-physics simulation.

Train a conditional generative model on calorimeter showers (from Geant4, the
CaloChallenge, or hepgen's built-in reference simulator), sample new showers and
validate them with physics observables and statistical tests.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
