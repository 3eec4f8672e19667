"""Export helpers: the FMD switch, the metadata of ONNX/OpenVINO files, the OpenVINO set-up.

:class:`~anomalib_maa.Maa` overrides ``to_onnx`` (which anomalib's ``to_openvino`` calls) to wrap
the export in :func:`exportable_fmd` and to record :func:`export_metadata` in the ONNX file
(both in :mod:`anomalib_maa.models.maa.export`, with the model); the OpenVINO converter carries it
into the IR's ``rt_info`` (section ``framework``). So ``Engine.export(model, "onnx" | "openvino")``
and ``anomalib-maa export`` need nothing else; this module reads the files back.
``"torch"`` exports pickle the whole module, with the exact ``eigh`` FMD.

Example:
    >>> OPENVINO_CONFIG
    {'INFERENCE_PRECISION_HINT': 'f32'}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomalib_maa.models.maa.export import (
    EXPORT_FMD_METHOD,
    METADATA_PREFIX,
    OPENVINO_CONFIG,
    export_metadata,
    exportable_fmd,
    write_onnx_metadata,
)

if TYPE_CHECKING:
    from anomalib.deploy import OpenVINOInferencer

__all__ = [
    "EXPORT_FMD_METHOD",
    "OPENVINO_CONFIG",
    "export_metadata",
    "exportable_fmd",
    "openvino_inferencer",
    "read_export_metadata",
    "write_onnx_metadata",
]


def _any_to_str(value: Any) -> str:  # noqa: ANN401
    """An OpenVINO ``OVAny`` (whose ``str`` is its class name) or a plain value, as text."""
    return str(value.astype(str)) if hasattr(value, "astype") else str(value)


def read_export_metadata(path: str | Path) -> dict[str, str]:
    """Read the ``maa.*`` metadata of an exported ``.onnx`` or OpenVINO ``.xml`` file.

    Args:
        path: The exported model.

    Returns:
        The metadata without the prefix (empty when the file has none).
    """
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        props = {entry.key: entry.value for entry in proto.metadata_props}
    else:
        import openvino as ov

        info = ov.Core().read_model(str(path.with_suffix(".xml"))).get_rt_info()
        framework = info["framework"] if "framework" in info else {}
        props = {str(key): _any_to_str(framework[key]) for key in framework}
    return {key[len(METADATA_PREFIX) :]: value for key, value in props.items() if key.startswith(METADATA_PREFIX)}


def openvino_inferencer(path: str | Path, device: str = "CPU", config: dict | None = None) -> OpenVINOInferencer:
    """Create anomalib's :class:`~anomalib.deploy.OpenVINOInferencer` with :data:`OPENVINO_CONFIG` applied.

    Args:
        path: Exported ``.xml``/``.bin`` or ``.onnx`` file.
        device: OpenVINO device (``"CPU"``, ``"GPU"``, ``"AUTO"``).
        config: Further compile options; they win over :data:`OPENVINO_CONFIG`.

    Returns:
        The inferencer.
    """
    from anomalib.deploy import OpenVINOInferencer

    return OpenVINOInferencer(path=path, device=device, config={**OPENVINO_CONFIG, **(config or {})})
