"""anomalib datamodules for the paper's datasets, all following the paper's 70/30 protocol.

- :class:`Ksdd`: KolektorSDD in its native ``kosNN/PartN.jpg`` + ``PartN_label.bmp`` layout.
- :class:`Rsdds`: RSDDs rail strips cut into square blocks (cached).
- :class:`Mcsd`: motor-commutator line data (``groove``, ``cylinder``, ``hook``) in a simple folder layout.
- :func:`protocol_split`: the shared split (70 % of defect-free images train, the rest and all defects test).

See ``docs/datasets.md`` for where to get each dataset and how to lay it out.
"""

from anomalib_maa.data.base import ProtocolDataModule, SampleDataset, default_num_workers
from anomalib_maa.data.checks import DatasetError
from anomalib_maa.data.ksdd import Ksdd
from anomalib_maa.data.mcsd import Mcsd
from anomalib_maa.data.protocol import n_train_images, protocol_split
from anomalib_maa.data.rsdds import Rsdds

__all__ = [
    "DatasetError",
    "Ksdd",
    "Mcsd",
    "ProtocolDataModule",
    "Rsdds",
    "SampleDataset",
    "default_num_workers",
    "n_train_images",
    "protocol_split",
]
