"""ComfyUI custom nodes for rethined_engine. Install: link this folder into ComfyUI's custom_nodes/ (e.g.
`ln -s "$(python -c 'import rethined_engine.integrations.comfyui as m, os; print(os.path.dirname(m.__file__))')"
ComfyUI/custom_nodes/rethined`) in the Python environment where ComfyUI runs and rethined_engine is installed.
ComfyUI reads NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS from here."""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
