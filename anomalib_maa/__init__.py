"""anomalib-maa: the Memory-augmented Adversarial Autoencoder (MAA) as an anomalib model.

Importing the package makes :class:`Maa` a direct subclass of anomalib's ``AnomalibModule``
that anomalib can see, so ``anomalib.models.get_model("maa")`` returns it.

Example:
    >>> import anomalib_maa
    >>> from anomalib.models import get_model
    >>> type(get_model("maa", image_size=(64, 64), n_features=4)).__name__
    'Maa'
"""

from anomalib_maa.console import is_cli_process, quiet_third_party_warnings

if is_cli_process():  # the anomalib-maa command: before anomalib and timm are imported (never in tests)
    quiet_third_party_warnings()

from anomalib_maa.metrics.fmd import frechet_markov_distance  # noqa: E402
from anomalib_maa.models import Maa, MaaModel  # noqa: E402
from anomalib_maa.post_processing import PautaPostProcessor  # noqa: E402

__all__ = ["Maa", "MaaModel", "PautaPostProcessor", "frechet_markov_distance"]
__version__ = "0.1.0"
