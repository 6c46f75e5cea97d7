"""The training recipes of notebooks 01-05 (one module per notebook): one source for every model the companion trains.

Each paper notebook trains its models by calling its recipe with a typed configuration built from
its parameters (``Config.from_parameters(PARAMETERS)``), and notebook 06 calls the same recipe
with the same notebook's parameters at the same profile. ``training.fit`` then computes the same
checkpoint key in both places and loads instead of training: there is nothing to keep in sync.

    ProbabilisticLoss  -> train_probabilistic_loss   notebook 01 (paper 000, Algorithm 1, eq. 6 and 9)
    HRLoss             -> train_hr_loss              notebook 02 (Picot et al., eq. 3)
    StochasticLWTA     -> train_table1_cifar         notebook 03 (Kaspar et al., Table 1)
    AdversaryCritic    -> train_adversary_critic, train_judge   notebook 04 (Matyasko & Chau 2018)
    StochasticWeights  -> train_stochastic_weights   notebook 05 (Khan et al. 2019)
    -> train_adversarial_mlps                        notebook 06's own MLPs (PGD-AT, PNI, Stochastic LWTA)

Every recipe loads its own training data (``core.data``, as tensors on ``device``) from the
configuration, so the data, like the model, are the same wherever the recipe runs.
"""

from .adversary_critic import ADVERSARY_CRITIC_DEFENSES, AdversaryCritic, train_adversary_critic, train_judge
from .base import Config
from .hr_loss import HRLoss, train_hr_loss
from .probabilistic_loss import PROBABILISTIC_LOSS_MODELS, ProbabilisticLoss, train_probabilistic_loss
from .stochastic_lwta import StochasticLWTA, train_table1_cifar
from .stochastic_weights import StochasticWeights, train_adversarial_mlps, train_stochastic_weights

__all__ = ["Config", "ProbabilisticLoss", "HRLoss", "StochasticLWTA", "AdversaryCritic", "StochasticWeights",
           "PROBABILISTIC_LOSS_MODELS", "ADVERSARY_CRITIC_DEFENSES", "train_probabilistic_loss", "train_hr_loss",
           "train_table1_cifar", "train_adversary_critic", "train_judge", "train_stochastic_weights",
           "train_adversarial_mlps"]
